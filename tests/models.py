"""Small real PyTorch models used across the tests (built in milliseconds)."""

from __future__ import annotations

import torch
from torch import nn


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


class DigitsCNN(nn.Module):
    """The 8x8 digits classifier of the demo."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(32 * 4 * 4, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Forecaster(nn.Module):
    """LSTM sequence forecaster: (batch, time, features) -> (batch, 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(4, 16, batch_first=True)
        self.out = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.lstm(x)
        return self.out(seq[:, -1])


def transformer_encoder() -> nn.Module:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(d_model=32, nhead=4, dim_feedforward=64, batch_first=True)
    return nn.TransformerEncoder(layer, num_layers=2)


class DictModel(nn.Module):
    """Keyword tensor inputs; a tuple holding a tensor and a dict of tensors as output."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 8)
        self.proj = nn.Linear(8, 4)

    def forward(self, tokens: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        hidden = self.embed(tokens) * weights.unsqueeze(-1)
        pooled = hidden.mean(dim=1)
        return self.proj(pooled), {"hidden": hidden, "norm": pooled.norm(dim=-1)}


class Unconvertible(nn.Module):
    """Uses an operator neither torch exporter converts (linalg.svd)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(x)[0]


def bert(*, vocab: int = 200, hidden: int = 64, layers: int = 2, heads: int = 4, positions: int = 64) -> nn.Module:
    """A randomly initialised Hugging Face BERT built from a small config (nothing downloaded)."""
    import transformers

    config = transformers.BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=4 * hidden if hidden >= 128 else 2 * hidden,
        max_position_embeddings=positions,
    )
    torch.manual_seed(0)
    return transformers.BertModel(config).eval()


def bert_inputs(rng, batch: int, seq: int, vocab: int = 200) -> dict:
    """Token ids and an all-ones attention mask, as numpy arrays."""
    import numpy as np

    return {"input_ids": rng.integers(0, vocab, (batch, seq)), "attention_mask": np.ones((batch, seq), np.int64)}


def fit(model: nn.Module, x, y, *, epochs: int, lr: float = 3e-3, batch: int = 64) -> nn.Module:
    """A few epochs of Adam and cross-entropy on numpy data; returns the model in train mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for i in range(0, len(x), batch):
            optimizer.zero_grad()
            logits = model(torch.from_numpy(x[i : i + batch]))
            torch.nn.functional.cross_entropy(logits, torch.as_tensor(y[i : i + batch])).backward()
            optimizer.step()
    return model
