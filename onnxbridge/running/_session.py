"""A checked, honest wrapper around ``onnxruntime.InferenceSession``."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from onnxbridge.core._errors import InferenceError, InputError, ProviderError, first_line
from onnxbridge.graph import _dtypes, _scratch
from onnxbridge.running import _feeds, _providers

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort

__all__ = ["InputSpec", "ProviderFallbackWarning", "Session"]


class ProviderFallbackWarning(UserWarning):
    """A requested execution provider was skipped and the session fell back."""


@dataclass(frozen=True)
class InputSpec:
    """One model input as onnxruntime declares it.

    Attributes:
        name: Input name.
        dtype: numpy dtype onnxruntime expects, or ``None`` for non-tensor inputs.
        shape: Dimensions: ints are fixed, strings are symbolic, ``None`` unknown.
    """

    name: str
    dtype: np.dtype[Any] | None
    shape: tuple[int | str | None, ...]

    @property
    def fixed(self) -> tuple[tuple[int, int], ...]:
        """(axis, size) of every fixed dimension."""
        return tuple((axis, dim) for axis, dim in enumerate(self.shape) if isinstance(dim, int))


class Session:
    """An onnxruntime session with input checks and truthful providers.

    Create one with :meth:`onnxbridge.Artifact.session`. Calling it is the same as
    :meth:`run`. Safe to call from several threads at once.

    ``model`` is serialized bytes, a path, or an ``onnx.ModelProto``; a ModelProto with more
    than 32 MB of weights is read from a scratch file (removed with the session) rather
    than serialized.
    """

    def __init__(
        self,
        model: bytes | str | os.PathLike[str] | onnx.ModelProto,
        providers: Sequence[_providers.ProviderSpec] | str | None = None,
        *,
        strict: bool = False,
        threads: int | None = None,
        options: ort.SessionOptions | None = None,
    ) -> None:
        import onnxruntime as ort

        plan = _providers.plan(providers, strict=strict)
        for name, reason in plan.skipped:
            warnings.warn(
                f"onnxbridge skipped execution provider {name}: {reason}.", ProviderFallbackWarning, stacklevel=3
            )
        self._scratch: _scratch.ScratchCopy | None = None
        if not isinstance(model, (bytes, str, os.PathLike)):  # a ModelProto
            if _scratch.wants_file(model):  # read from a file: no serialized copy of every weight
                self._scratch = _scratch.ScratchCopy(model)
                model = self._scratch.path
            else:
                model = model.SerializeToString()
        so = options if options is not None else ort.SessionOptions()
        if threads is not None:
            if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
                raise InputError(f"threads={threads!r}: expected a non-negative int (0 lets onnxruntime choose).")
            so.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(
                os.fspath(model) if isinstance(model, os.PathLike) else model, sess_options=so, providers=plan.providers
            )
        except Exception as err:
            raise InferenceError(
                f"onnxruntime could not load the model: {_first_line(err)}. Check the model with "
                "onnxbridge.load(path).validate(), and that its opset is supported by this onnxruntime."
            ) from err
        active = list(self._session.get_providers())
        failed = [name for name in _providers.names(plan.providers) if name not in active]
        if failed and strict:
            raise ProviderError(
                f"strict=True and onnxruntime failed to load {', '.join(failed)} (active: {', '.join(active)}); "
                "its libraries are missing or incompatible. See onnxruntime's log above for the cause."
            )
        for name in failed:
            warnings.warn(
                f"onnxbridge: execution provider {name} is available but failed to load "
                f"(its libraries are missing or incompatible; see onnxruntime's log); running on {', '.join(active)}.",
                ProviderFallbackWarning,
                stacklevel=3,
            )
        self.requested_providers: tuple[str, ...] = tuple(_providers.names(plan.providers))
        self.skipped_providers: tuple[tuple[str, str], ...] = tuple(plan.skipped)
        self.providers: tuple[str, ...] = tuple(active)
        self.inputs: tuple[InputSpec, ...] = tuple(
            InputSpec(
                i.name,
                _dtypes.from_ort(i.type),
                tuple(d if isinstance(d, (int, str)) else None for d in i.shape),
            )
            for i in self._session.get_inputs()
        )
        self.input_names: tuple[str, ...] = tuple(spec.name for spec in self.inputs)
        self.output_names: tuple[str, ...] = tuple(o.name for o in self._session.get_outputs())
        # (name, dtype, rank, fixed dims) per tensor input, precomputed for the hot path.
        self._checks = tuple((s.name, s.dtype, len(s.shape), s.fixed) for s in self.inputs if s.dtype is not None)
        self._name_set = frozenset(self.input_names)
        self._dtypes = {s.name: s.dtype for s in self.inputs}
        self._run = self._session.run
        # The plan of the hot path: a dict of exactly these inputs, numpy arrays of exactly these dtypes, goes to
        # onnxruntime as it is (onnxruntime checks rank and fixed sizes itself; on its refusal the full checks
        # below name what is wrong). None where an input has no numpy dtype (strings, sequences).
        typed = all(spec.dtype is not None for spec in self.inputs)
        self._exact = tuple((s.name, s.dtype) for s in self.inputs) if typed else None
        self._only_output = self.output_names[0] if len(self.output_names) == 1 else None

    @property
    def ort_session(self) -> Any:
        """The underlying ``onnxruntime.InferenceSession``."""
        return self._session

    def __repr__(self) -> str:
        return f"Session(inputs={list(self.input_names)}, outputs={list(self.output_names)}, providers={list(self.providers)})"

    def __call__(self, inputs: Any) -> dict[str, np.ndarray]:
        return self.run(inputs)

    def run(self, inputs: Any) -> dict[str, np.ndarray]:
        """Run the model.

        Args:
            inputs: A dict by input name, a list or tuple in input order, or a single
                array for a single-input model. numpy arrays and torch tensors (CPU
                tensors are shared, not copied) are accepted; a dtype of the same
                kind (float64 for float32) is cast when every value survives the cast.

        Returns:
            Outputs by name, as numpy arrays.

        Raises:
            InputError: A missing or unknown input, wrong rank, a fixed dimension that
                differs, a dtype of another kind, or a value the cast would change (an
                integer out of the input type's range, a float beyond its largest value).
            InferenceError: onnxruntime failed while running.
        """
        feeds = inputs if self._fits(inputs) else self._feeds(inputs)
        try:
            outputs = self._run(None, feeds)
        except Exception as err:
            if feeds is inputs:
                self._feeds(inputs)  # a rank or a fixed size onnxruntime refused: raises the InputError saying which
            raise InferenceError(
                f"onnxruntime failed while running the model: {_first_line(err)}. If the input shapes are "
                "unusual for this model, run art.validate() to see which sizes it supports."
            ) from err
        if self._only_output is not None:
            return {self._only_output: outputs[0]}
        return dict(zip(self.output_names, outputs))  # noqa: B905 - onnxruntime returns one per output

    def _fits(self, inputs: Any) -> bool:
        """Whether ``inputs`` is a dict of exactly the inputs, as numpy arrays of exactly their dtypes (no cast)."""
        exact = self._exact
        if exact is None or type(inputs) is not dict or len(inputs) != len(exact):
            return False
        for name, dtype in exact:
            value = inputs.get(name)
            if type(value) is not np.ndarray or value.dtype is not dtype:
                return False
        return True

    def _feeds(self, inputs: Any) -> dict[str, Any]:
        # The hot path: a dict of numpy arrays that already fit is passed on as it is.
        given = inputs if type(inputs) is dict else _feeds.as_mapping(inputs, self.input_names, self._dtypes)
        if given.keys() != self._name_set:
            _feeds.raise_names(given, self.input_names)
        feeds: dict[str, Any] | None = None
        for name, dtype, rank, fixed in self._checks:
            value = given[name]
            original = value
            if type(value) is not np.ndarray:
                value = _feeds.to_numpy(value, name)
            if value.ndim != rank:
                raise InputError(
                    f"Input {name!r} has rank {value.ndim} (shape {value.shape}), but the model expects rank "
                    f"{rank} (shape {self._declared(name)}). Reshape it, e.g. add a batch axis with x[None]."
                )
            shape = value.shape
            for axis, size in fixed:
                if shape[axis] != size:
                    raise InputError(
                        f"Input {name!r} has shape {shape}; axis {axis} must be {size} "
                        f"(the model declares {self._declared(name)}). Only symbolic axes may vary; re-export "
                        "with that axis in dynamic_axes if it should."
                    )
            if value.dtype is not dtype and value.dtype != dtype:  # after the shape checks: a cast allocates
                value = _feeds.cast_to(value, dtype, name)
            if value is not original:
                if feeds is None:
                    feeds = dict(given)  # never modify the caller's dict
                feeds[name] = value
        return feeds if feeds is not None else given  # type: ignore[return-value]

    def _declared(self, name: str) -> str:
        spec = next(s for s in self.inputs if s.name == name)
        return "[" + ", ".join("?" if d is None else str(d) for d in spec.shape) + "]"


def _first_line(err: BaseException) -> str:
    return first_line(err) or type(err).__name__
