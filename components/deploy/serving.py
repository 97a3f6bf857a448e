"""Which model the endpoint serves: the registry's champion (and a canary-cleared challenger), loaded only
when a second person approved it and its files hash to what the registry recorded, swapped without
dropping a request.
"""

from __future__ import annotations

import logging
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

from defectops.components.deploy.detector import OnnxDetector
from defectops.components.deploy.serve_config import ServeConfig
from defectops.components.deploy.verify import DeployError, variant_of, verify_artefacts, version_dir
from defectops.drift_features import EmbeddingReducer
from defectops.errors import DefectopsError
from defectops.registries import Registry, open_registry
from defectops.registry import CHALLENGER, CHAMPION, VersionInfo

log = logging.getLogger("defectops.serve")


@dataclass
class LoadedModel:
    version: str
    detector: OnnxDetector
    folder: Path
    info: VersionInfo
    reducer: EmbeddingReducer | None = None
    explainer: object | None = None
    audited_fallback: bool = False  # served because the alias holder was refused at start-up (see below)
    lock: threading.Lock = field(default_factory=threading.Lock)


SERVED_FILES = ("model.onnx", "model.json", "embedding_pca.npz")


def load_verified(config: ServeConfig, info: VersionInfo, role: str = CHAMPION,
                  registry: Registry | None = None) -> LoadedModel:
    """Load a version only if a second person's approval is on the signed audit log (the rule lives in
    `defectops.approval`) and every file it loads hashes to what the registry recorded at deploy."""
    refusal = (registry or open_registry(config.model_name)).served_refusal(info, role)
    if refusal:
        raise DeployError(refusal)
    folder = version_dir(config.deploy_root, info.version)
    if not (folder / "model.onnx").exists():
        raise DeployError(f"{config.model_name} v{info.version} is {role} but not exported to {folder}: "
                          "run 'defectops deploy'")
    verify_artefacts(folder, info, SERVED_FILES)
    detector = OnnxDetector(folder, batching=(config.micro_batch, config.batch_wait_ms))
    return LoadedModel(info.version, detector, folder, info, EmbeddingReducer.load(folder))


class ChampionWatcher:
    """Holds the served model and swaps it when the registry's champion changes.

    Requests take a reference to the current model and keep it to the end, so a swap never
    interrupts one; a failed load keeps serving the previous champion and is reported.
    """

    def __init__(self, config: ServeConfig, registry: Registry | None = None):
        self.config = config
        self.registry = registry or open_registry(config.model_name)
        self.current: LoadedModel | None = None
        self.canary: LoadedModel | None = None
        self.last_error: str | None = None
        self.canary_error: str | None = None
        self._stop = threading.Event()
        self._random = random.Random()

    def pick(self) -> tuple[LoadedModel, str]:
        """The model for one request: the canary for its share of traffic, else the champion."""
        canary = self.canary
        if canary is not None and self._random.random() < self.config.canary_share:
            return canary, "canary"
        return self.current, "champion"

    def refresh(self) -> None:
        self._refresh_champion()
        if self.config.canary_share > 0:
            self._refresh_canary()

    def _refresh_canary(self) -> None:
        challenger = self.registry.by_alias(CHALLENGER)
        cleared = challenger is not None and challenger.tags.get("canary") == "approved"
        if cleared and self.canary is not None and self.canary.version == challenger.version:
            return
        if self.canary is not None:  # withdrawn or replaced
            self.canary.detector.close()
        if not cleared:
            self.canary, self.canary_error = None, None
            return
        try:
            self.canary, self.canary_error = load_verified(self.config, challenger, "canary", self.registry), None
            log.warning("canary v%s takes %.0f%% of requests", challenger.version, 100 * self.config.canary_share)
        except DefectopsError as exc:
            self.canary, self.canary_error = None, str(exc)

    def _refresh_champion(self) -> None:
        champion = self.registry.champion()
        if champion is None:
            self.last_error = f"model '{self.config.model_name}' has no champion"
            return
        if self.current is not None and self.current.version == champion.version:
            self.last_error = None
            return
        problem = None
        try:
            loaded = load_verified(self.config, champion, CHAMPION, self.registry)
        except DefectopsError as exc:
            loaded = self._audited_fallback(champion) if self.current is None else None
            serving = loaded or self.current
            problem = str(exc) if serving is None else (
                f"{exc}; serving v{serving.version}, the last champion the signed audit log names"
                if serving.audited_fallback else f"{exc}; still serving v{serving.version}")
            if self.last_error != problem:  # said once, not every few seconds
                log.error("not serving v%s: %s", champion.version, problem)
            self.last_error = problem
            if loaded is None:
                return
        previous = self.current
        self.current, self.last_error = loaded, problem
        if previous is not None:
            previous.detector.close()
        log.warning("serving %s v%s %s (was %s)", self.config.model_name, loaded.version,
                    variant_of(loaded.detector.meta), f"v{previous.version}" if previous else None)

    def _audited_fallback(self, champion: VersionInfo) -> LoadedModel | None:
        """At start-up, when the alias holder is refused (moved in MLflow's UI, say): the version the signed audit
        log last made champion, if it still verifies. One click outside defectops must not stop the line; a
        running endpoint already keeps what it serves."""
        try:
            audited = self.registry.audited_champion()
            if audited is None or audited.version == champion.version:
                return None
            loaded = load_verified(self.config, audited, CHAMPION, self.registry)
            loaded.audited_fallback = True
            return loaded
        except DefectopsError as exc:
            log.error("the audited champion cannot be served either: %s", exc)
            return None

    def run(self) -> None:
        while not self._stop.wait(self.config.reload_interval_s):
            try:
                self.refresh()
            except Exception as exc:  # noqa: BLE001 - a registry hiccup must not kill the watcher
                self.last_error = f"registry check failed: {exc}"

    def start(self) -> None:
        threading.Thread(target=self.run, name="champion-watcher", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
