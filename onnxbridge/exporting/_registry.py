"""The registry: which adapter converts which model.

Models are matched by the top-level module names of the classes in their MRO (a
Lightning module's MRO reaches ``torch``), which needs no framework import. Built-in
adapters are registered by module path and imported only when a model of theirs
arrives; third-party adapters come from :func:`register_adapter` or from the
``onnxbridge.adapters`` entry-point group.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import os
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from onnxbridge.core._errors import RegistrationError, UnsupportedModelError
from onnxbridge.exporting._adapter import Adapter

ENTRY_POINT_GROUP = "onnxbridge.adapters"

_HOW_TO_REGISTER = (
    "To add one, write a class with `framework`, `module_roots`, `accepts(model)` and "
    "`export(model, request)` and call onnxbridge.register_adapter(MyAdapter()), or publish it "
    f"under the '{ENTRY_POINT_GROUP}' entry-point group."
)


@dataclass
class _Entry:
    """A registered adapter: an instance, or a ``"module:Class"`` imported on first use.

    The class's own ``module_roots`` is the one source of truth for which models it is
    tried on; reading it imports the adapter's module, which imports no framework.
    """

    framework: str
    target: str = ""
    _adapter: Adapter | None = None

    @functools.cached_property
    def adapter_class(self) -> type[Adapter]:
        if self._adapter is not None:
            return type(self._adapter)
        module_name, _, attr = self.target.partition(":")
        cls: type[Adapter] = getattr(importlib.import_module(module_name), attr)
        return cls

    @property
    def module_roots(self) -> tuple[str, ...]:
        if self._adapter is not None:
            return tuple(self._adapter.module_roots)
        return tuple(self.adapter_class.module_roots)

    def adapter(self) -> Adapter:
        if self._adapter is None:
            self._adapter = self.adapter_class()
        return self._adapter


class Registry:
    """Maps frameworks to adapters. Use the module-level functions for the default one."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._entry_points_loaded = False
        self._entry_points_lock = threading.Lock()  # one thread loads plug-ins; the others wait for it

    def register(self, adapter: Adapter, *, overwrite: bool = False) -> None:
        """Register an adapter instance. Refuses a taken framework name unless ``overwrite``."""
        _check_adapter(adapter)
        self._add(_Entry(adapter.framework, _adapter=adapter), overwrite)

    def register_lazy(self, framework: str, target: str) -> None:
        """Register an adapter class by ``"package.module:ClassName"``, imported on first use."""
        self._add(_Entry(framework, target), overwrite=False)

    def _add(self, entry: _Entry, overwrite: bool) -> None:
        with self._lock:
            if entry.framework in self._entries and not overwrite:
                raise RegistrationError(
                    f"An adapter for framework {entry.framework!r} is already registered. "
                    "Pass overwrite=True to replace it, or give your adapter another `framework` name."
                )
            self._entries.pop(entry.framework, None)
            # Newest registrations are tried first, so a user's adapter wins over a built-in.
            self._entries = {entry.framework: entry, **self._entries}

    def unregister(self, framework: str) -> None:
        """Remove the adapter registered for ``framework`` (no error if absent)."""
        with self._lock:
            self._entries.pop(framework, None)

    def frameworks(self) -> list[str]:
        """Names of every registered framework, sorted."""
        self._load_entry_points()
        return sorted(self._entries)

    def get(self, framework: str) -> Adapter:
        """The adapter for ``framework``; raises :class:`UnsupportedModelError` if none."""
        self._load_entry_points()
        entry = self._entries.get(framework)
        if entry is None:
            raise UnsupportedModelError(
                f"framework={framework!r} has no registered adapter. "
                f"Registered frameworks: {', '.join(self.frameworks())}. {_HOW_TO_REGISTER}"
            )
        return entry.adapter()

    def find(self, model: object) -> Adapter:
        """The adapter that converts ``model``, judged by its class hierarchy."""
        self._load_entry_points()
        roots = _module_roots(model)
        for entry in self._candidates(roots):
            adapter = entry.adapter()
            if adapter.accepts(model):
                return adapter
        kind = f"{type(model).__module__}.{type(model).__qualname__}"
        hint = ""
        if isinstance(model, (str, os.PathLike)):
            hint = " A path is accepted when it names an existing '.onnx' file or SavedModel directory."
        raise UnsupportedModelError(
            f"No adapter converts a model of type {kind}.{hint} "
            f"Supported frameworks: {', '.join(self.frameworks())}. "
            f"If this is one of those, pass framework='...' to choose its adapter. {_HOW_TO_REGISTER}"
        )

    def _candidates(self, roots: set[str]) -> Iterator[_Entry]:
        with self._lock:
            entries = list(self._entries.values())
        for entry in entries:
            if roots.intersection(entry.module_roots):
                yield entry

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        with self._entry_points_lock:
            if not self._entry_points_loaded:
                self._load_entry_points_now()
                self._entry_points_loaded = True

    def _load_entry_points_now(self) -> None:
        for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                loaded = point.load()
                adapter = loaded() if isinstance(loaded, type) else loaded
                self.register(adapter)
            except Exception as err:  # noqa: BLE001 - a broken plug-in must not break export
                warnings.warn(
                    f"onnxbridge could not load adapter entry point {point.name!r} ({point.value}): {err}",
                    RuntimeWarning,
                    stacklevel=3,
                )


def _module_roots(model: object) -> set[str]:
    classes = [cls for cls in type(model).__mro__ if cls is not object]
    return {cls.__module__.split(".")[0] for cls in classes}


def _check_adapter(adapter: object) -> None:
    problems = []
    framework = getattr(adapter, "framework", None)
    if not isinstance(framework, str) or not framework.isidentifier():
        problems.append(f"`framework` must be an identifier-like string, got {framework!r}")
    roots = getattr(adapter, "module_roots", None)
    if not isinstance(roots, (tuple, list)) or not all(isinstance(r, str) and r for r in roots):
        problems.append(f"`module_roots` must be a tuple of module names, got {roots!r}")
    for method in ("accepts", "export"):
        if not callable(getattr(adapter, method, None)):
            problems.append(f"`{method}` must be a method")
    if problems:
        raise RegistrationError(
            f"{type(adapter).__name__} is not a valid adapter: {'; '.join(problems)}. {_HOW_TO_REGISTER}"
        )


default_registry = Registry()
default_registry.register_lazy("onnx", "onnxbridge.adapters.onnx_model:OnnxAdapter")
default_registry.register_lazy("torch", "onnxbridge.adapters.pytorch:TorchAdapter")
# After torch, so tried before it: transformers models are torch modules, and this adapter knows their tasks.
default_registry.register_lazy("transformers", "onnxbridge.adapters.transformers:TransformersAdapter")
default_registry.register_lazy("sklearn", "onnxbridge.adapters.scikit_learn:SklearnAdapter")
default_registry.register_lazy("lightgbm", "onnxbridge.adapters.lightgbm_booster:LightGBMAdapter")
# Registered after torch so that it is tried first: a Keras 3 model on the torch backend is
# also a torch.nn.Module, and the TensorFlow adapter explains which route to take.
default_registry.register_lazy("tensorflow", "onnxbridge.adapters.tensorflow:TensorFlowAdapter")


def register_adapter(adapter: Adapter, *, overwrite: bool = False) -> None:
    """Register a converter for a new framework (or replace one with ``overwrite=True``).

    Args:
        adapter: An object following the :class:`onnxbridge.Adapter` protocol.
        overwrite: Replace an adapter already registered under the same ``framework``.

    Raises:
        RegistrationError: The adapter is malformed, or its framework is taken.
    """
    default_registry.register(adapter, overwrite=overwrite)


def supported_frameworks() -> list[str]:
    """Names of the frameworks :func:`onnxbridge.export` can convert from, sorted."""
    return default_registry.frameworks()
