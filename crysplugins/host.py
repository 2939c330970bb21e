"""The plugin host: a pluggy ``PluginManager`` holding the built-in and third-party predictor plugins.

Built-in plugins (the modules listed in :data:`crysplugins.plugins.BUILTINS`) register through the same
``register_predictors(register)`` hook a third-party distribution uses; the host knows no predictor by
name.  Third-party plugins come from the entry-point group ``crysplugins``.

A plugin that fails to import, whose hook implementations do not match the specs (``check_pending``), whose
hook raises, or that registers something that is not a valid predictor, is recorded as a
:class:`PluginFailure` (plugin name, distribution, error) and skipped; everything else keeps working.

Environment variables:

* ``CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD=1`` — do not load third-party entry points (built-ins still load);
* ``CRYSPLUGINS_PLUGINS=name1,name2`` — load only these plugins (entry-point names, or built-in module
  names such as ``solvent_content``).

Third-party plugins are isolated (see :mod:`crysplugins.sandbox`): their entry points are imported in a
child process with a time limit, and the host holds proxies whose ``predict`` (and ``example_inputs``,
``refine``) run in a child with a timeout, so a plugin that hangs, raises, exits or crashes is named in one
sentence and never takes the host down.  ``isolate=False`` (or ``CRYSPLUGINS_PLUGIN_ISOLATION=0``) loads
them in-process instead.
"""
from __future__ import annotations

import importlib
import importlib.metadata as metadata
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import pluggy

from crysplugins import hookspecs, sandbox
from crysplugins.errors import CrysError
from crysplugins.interface import Predictor, Refiner, validate_predictor, validate_refiner
from crysplugins.plugins import BUILTINS

ENTRY_POINT_GROUP = "crysplugins"
ENV_DISABLE_AUTOLOAD = "CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD"
ENV_ONLY = "CRYSPLUGINS_PLUGINS"
BUILTIN_DISTRIBUTION = "crysplugins (built-in)"


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that could not be used, and why."""

    plugin: str
    distribution: str
    error: str


@dataclass(frozen=True)
class PredictorEntry:
    """A registered predictor and where it came from."""

    predictor: Predictor
    plugin: str
    distribution: str


@dataclass(frozen=True)
class RefinerEntry:
    """A registered refiner and where it came from."""

    refiner: Refiner
    plugin: str
    distribution: str


@dataclass
class _Source:
    plugin: str
    distribution: str


@dataclass
class Host:
    """Loads plugins and gives access to their predictors.

    ``autoload`` (default: unless ``CRYSPLUGINS_DISABLE_PLUGIN_AUTOLOAD`` is set) loads third-party entry
    points; ``only`` (default: ``CRYSPLUGINS_PLUGINS``) restricts loading to the named plugins;
    ``extra_plugins`` registers further plugin objects (modules or instances), e.g. in tests.
    """

    autoload: bool | None = None
    only: Iterable[str] | None = None
    extra_plugins: Iterable[tuple[str, Any]] = ()
    isolate: bool | None = None
    predictors: dict[str, PredictorEntry] = field(default_factory=dict, init=False)
    refiners: dict[str, RefinerEntry] = field(default_factory=dict, init=False)
    failures: list[PluginFailure] = field(default_factory=list, init=False)
    plugins: list[tuple[str, str]] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        if self.autoload is None:
            self.autoload = os.environ.get(ENV_DISABLE_AUTOLOAD, "").strip().lower() not in ("1", "true", "yes")
        if self.only is None:
            env = os.environ.get(ENV_ONLY, "").strip()
            self.only = [s.strip() for s in env.split(",") if s.strip()] if env else None
        self._only = set(self.only) if self.only is not None else None
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._sources: dict[str, _Source] = {}
        self._isolated: list[sandbox.PluginReport] = []
        self._load_builtins()
        if self.autoload:
            self._load_entry_points()
        for name, plugin in self.extra_plugins:
            self._register_plugin(plugin, name, "extra")
        self._collect()

    # ---------------------------------------------------------------- loading

    def _wanted(self, name: str) -> bool:
        return self._only is None or name in self._only

    def _load_builtins(self) -> None:
        for name in BUILTINS:
            if not self._wanted(name):
                continue
            try:
                module = importlib.import_module(f"crysplugins.plugins.{name}")
            except Exception as exc:  # a broken built-in is reported like any other plugin
                self.failures.append(PluginFailure(name, BUILTIN_DISTRIBUTION, _describe(exc)))
                continue
            self._register_plugin(module, name, BUILTIN_DISTRIBUTION)

    def _load_entry_points(self) -> None:
        isolate = sandbox.isolation_enabled() if self.isolate is None else self.isolate
        if isolate:
            self._load_entry_points_isolated()
            return
        for ep in _entry_points():
            if not self._wanted(ep.name):
                continue
            dist = _dist_name(ep)
            try:
                plugin = ep.load()
            except Exception as exc:
                self.failures.append(PluginFailure(ep.name, dist, f"import failed: {_describe(exc)}"))
                continue
            self._register_plugin(plugin, ep.name, dist)

    def _load_entry_points_isolated(self) -> None:
        """Import the entry points in child processes; register proxies for what they declare."""
        wanted = [ep for ep in _entry_points() if self._wanted(ep.name)]
        if not wanted:
            return
        try:
            reports = sandbox.discover([(ep.name, ep.value, _dist_name(ep)) for ep in wanted])
        except CrysError as exc:  # no child process could be started: every third-party plugin is lost
            for ep in wanted:
                self.failures.append(PluginFailure(ep.name, _dist_name(ep), str(exc)))
            return
        for report in reports:
            name, dist = report.plugin, report.distribution
            if self.pm.has_plugin(name) or name in self._sources:
                self.failures.append(PluginFailure(name, dist, "a plugin of this name is already loaded"))
                continue
            for error in report.errors:
                self.failures.append(PluginFailure(name, dist, error))
            if not report.predictors and not report.refiners and report.errors:
                continue
            self._sources[name] = _Source(name, dist)
            self.plugins.append((name, dist))
            self._isolated.append(report)

    def _add_isolated(self) -> None:
        """Register the proxies of isolated plugins (after the in-process ones, which win name clashes)."""
        for report in self._isolated:
            name, dist = report.plugin, report.distribution
            source = self._sources[name]
            for desc in report.predictors:
                self._add_predictor(sandbox.PredictorProxy(desc, name, dist, report.value), source)
            for desc in report.refiners:
                self._add_refiner(sandbox.RefinerProxy(desc, name, dist, report.value), source)

    def _register_plugin(self, plugin: Any, name: str, distribution: str) -> None:
        if self.pm.has_plugin(name):
            self.failures.append(PluginFailure(name, distribution, "a plugin of this name is already loaded"))
            return
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self.failures.append(PluginFailure(name, distribution, f"registration failed: {_describe(exc)}"))
            return
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            self.failures.append(PluginFailure(name, distribution, f"invalid hook implementation: {exc}"))
            return
        self._sources[name] = _Source(name, distribution)
        self.plugins.append((name, distribution))

    def _collect(self) -> None:
        """Call each plugin's hooks on its own, so that one failing plugin cannot hide the others."""
        self._call_each("register_predictors", self._add_predictor)
        self._call_each("register_refiners", self._add_refiner)
        self._add_isolated()

    def _call_each(self, hook_name: str, add: Callable[[Any, _Source], None]) -> None:
        hook = getattr(self.pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            source = self._sources.get(impl.plugin_name, _Source(impl.plugin_name, "unknown"))
            registered: list[Any] = []
            try:
                impl.function(register=registered.append)
            except Exception as exc:
                self.failures.append(PluginFailure(source.plugin, source.distribution,
                                                   f"{hook_name} raised: {_describe(exc)}"))
                continue
            for obj in registered:
                add(obj, source)

    def _add_predictor(self, predictor: Any, source: _Source) -> None:
        problems = validate_predictor(predictor)
        if problems:
            label = getattr(predictor, "name", type(predictor).__name__)
            self.failures.append(PluginFailure(source.plugin, source.distribution,
                                               f"invalid predictor {label!r}: {'; '.join(problems)}"))
            return
        if predictor.name in self.predictors:
            other = self.predictors[predictor.name]
            self.failures.append(PluginFailure(source.plugin, source.distribution,
                                               f"predictor {predictor.name!r} is already registered by {other.plugin}"))
            return
        self.predictors[predictor.name] = PredictorEntry(predictor, source.plugin, source.distribution)

    def _add_refiner(self, refiner: Any, source: _Source) -> None:
        problems = validate_refiner(refiner)
        if problems:
            self.failures.append(PluginFailure(source.plugin, source.distribution,
                                               f"invalid refiner: {'; '.join(problems)}"))
            return
        name = refiner.name
        if name in self.refiners:
            self.failures.append(PluginFailure(source.plugin, source.distribution,
                                               f"refiner {name!r} is already registered"))
            return
        self.refiners[name] = RefinerEntry(refiner, source.plugin, source.distribution)

    # ---------------------------------------------------------------- access

    def get(self, name: str) -> Predictor:
        """The predictor called ``name``; a CrysError naming the installed ones when there is none."""
        entry = self.predictors.get(name)
        if entry is None:
            known = ", ".join(sorted(self.predictors)) or "none"
            raise CrysError(f"There is no predictor called '{name}' (installed: {known}).")
        return entry.predictor

    def get_refiner(self, name: str) -> Any:
        entry = self.refiners.get(name)
        if entry is None:
            known = ", ".join(sorted(self.refiners)) or "none"
            raise CrysError(f"There is no refiner called '{name}' (installed: {known}).")
        return entry.refiner

    def names(self) -> list[str]:
        return sorted(self.predictors)


def _entry_points() -> list[metadata.EntryPoint]:
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _dist_name(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "unknown"
    return f"{dist.metadata['Name']} {dist.version}"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


_default_host: Host | None = None


def default_host() -> Host:
    """A process-wide host built on first use (environment variables are read then)."""
    global _default_host
    if _default_host is None:
        _default_host = Host()
    return _default_host
