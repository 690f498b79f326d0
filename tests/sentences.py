"""Varied sentences for judging sentence embeddings: short, long, numbers, code, non-English."""

# Evaluation set: never used for calibration.
SENTENCES = [
    "Thank you very much!",
    "Hi",
    "OK.",
    "Yes",
    "The quick brown fox jumps over the lazy dog.",
    "A man is playing a guitar on the street while people walk by.",
    "The stock market fell by 3.5% on Tuesday after the central bank raised interest rates to 4.25%.",
    "Call me at 555-0199 before 10:30 pm, or email info@example.com.",
    "In 1969, Apollo 11 landed on the Moon with 3 astronauts aboard.",
    "def add(a, b):\n    return a + b",
    "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;",
    "for (int i = 0; i < n; ++i) { sum += x[i] * y[i]; }",
    "import numpy as np; x = np.linspace(0, 1, 100)",
    "Le chat dort sur le canapé depuis ce matin.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "¿Dónde está la biblioteca más cercana?",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "Il pleut beaucoup à Paris en novembre.",
    "Machine learning models can be exported to ONNX and run with onnxruntime on many devices.",
    "Quantization reduces the size of neural networks by storing weights in eight bits instead of thirty-two.",
    "She sells seashells by the seashore.",
    "The mitochondria is the powerhouse of the cell.",
    "Error: connection refused (errno 111) at 127.0.0.1:8080",
    "https://example.org/path/to/page?query=1&sort=desc",
    "I absolutely loved this movie, the acting was superb and the soundtrack unforgettable.",
    "This is the worst product I have ever bought; it broke after two days.",
    "What time does the train to Edinburgh leave tomorrow morning?",
    "The patient was prescribed 500 mg of amoxicillin three times daily for ten days.",
    "42",
    "π ≈ 3.14159, e ≈ 2.71828",
    "Long ago, in a kingdom by the sea, there lived a king who loved maps more than gold; every evening he unrolled "
    "a new chart of distant shores, traced the rivers with his finger and dreamed of the cities at their mouths, "
    "while his ministers waited patiently for him to sign the laws that kept the realm at peace.",
    "Neural networks are trained with stochastic gradient descent, which updates parameters in the direction that "
    "reduces the loss on small batches of examples drawn from the training data.",
    "lol 😂😂 that was hilarious",
    "N/A",
    "The meeting has been moved to room 204, building B, on the 3rd floor.",
]

# Calibration set: other sentences, in padded pairs (so batch and sequence sizes vary).
CALIBRATION = [
    ["Good morning everyone.", "The cat sat on the mat."],
    ["x = 3 * (y + 2)", "Wie geht es dir?"],
    ["A long time ago in a galaxy far, far away, there was a war among the stars.", "Thanks!"],
    ["Prices rose 12% in 2023.", "print('hello')"],
]
