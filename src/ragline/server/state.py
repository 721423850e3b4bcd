"""What one app holds: settings, collections, keys, limits, jobs, metrics and the answer model."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from ragline.config import RaglineConfig
from ragline.embed.base import Embedder
from ragline.llm.config import LLMConfig, build_llm
from ragline.server.catalog import Catalog
from ragline.server.experiments import Experiments, ExperimentStore
from ragline.server.jobs import JobRunner, JobStore
from ragline.server.keys import KeyStore
from ragline.server.limits import InferencePool, KeyLimits, LocalLimits
from ragline.server.middleware import Metrics
from ragline.server.settings import ServerSettings
from ragline.server.shared_limits import SharedLimits
from ragline.server.tracing import Tracing

log = logging.getLogger("ragline.server")


class Generator:
    """The answer model, started on first use and shared by every request (None: answer
    extractively, because the server was told to or no model could start)."""

    def __init__(self, config: LLMConfig, *, extractive: bool, llm: Any = None) -> None:
        self.config, self.extractive = config, extractive
        self._llm, self._owned, self._tried = llm, False, llm is not None
        self.note: str | None = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        if self.extractive:
            return None
        with self._lock:
            if not self._tried:
                self._tried = True
                self._llm, self._owned = self._start(), True
            return self._llm

    def _start(self) -> Any:
        from ragline.llm import LLM
        from ragline.llm.models import LocalModelError

        try:
            return LLM("local") if self.config.is_default_local else build_llm(self.config)
        except LocalModelError as exc:
            self.note = f"no local model available ({exc}); answered extractively"
            log.warning("%s", self.note)
            return None

    def close(self) -> None:
        with self._lock:
            if self._owned and self._llm is not None:
                self._llm.close()
            self._llm = None


@dataclass
class ServerState:
    settings: ServerSettings
    catalog: Catalog
    keys: KeyStore
    jobs: JobStore
    runner: JobRunner
    pool: InferencePool
    generator: Generator
    tracing: Tracing
    experiments: Experiments
    limits: KeyLimits
    metrics: Metrics = field(default_factory=Metrics)
    ready: bool = False
    arm_generators: dict[str, Generator] = field(default_factory=dict)
    _arm_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def build(cls, settings: ServerSettings, config: RaglineConfig | None, *, llm: Any = None,
              embedder: Embedder | None = None) -> ServerState:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        jobs = JobStore(settings.data_dir / "jobs.sqlite")
        return cls(
            settings=settings,
            catalog=Catalog(settings.data_dir, mounts=settings.mounts, config=config,
                            embedder=embedder),
            keys=KeyStore(settings.keys_file()),
            jobs=jobs,
            runner=JobRunner(jobs),
            pool=InferencePool(settings.inference_workers, settings.inference_queue,
                               retry_after=settings.retry_after_s),
            generator=Generator(config.llm if config else LLMConfig(),
                                extractive=settings.extractive, llm=llm),
            tracing=Tracing(settings.data_dir, otlp=settings.otlp_endpoint,
                            delay_ms=settings.trace_flush_ms),
            experiments=Experiments(ExperimentStore.in_dir(settings.data_dir)),
            # several worker processes count each key's requests together; one counts alone
            limits=SharedLimits.in_dir(settings.data_dir) if settings.shared_limits
            else LocalLimits(),
        )

    def generator_for(self, overrides: dict[str, Any] | None) -> Generator:
        """The answer model of an experiment arm that sets `[llm]` (started on first use),
        else the server's."""
        if not overrides or "llm" not in overrides:
            return self.generator
        slot = json.dumps(overrides["llm"], sort_keys=True)
        with self._arm_lock:
            if slot not in self.arm_generators:
                base = self.generator.config.model_dump(mode="json")
                config = LLMConfig.model_validate({**base, **overrides["llm"]})
                self.arm_generators[slot] = Generator(config, extractive=self.settings.extractive)
            return self.arm_generators[slot]

    def close(self) -> None:
        self.ready = False
        self.runner.shutdown()
        self.pool.shutdown()
        self.generator.close()
        for generator in self.arm_generators.values():
            generator.close()
        self.tracing.close()
        self.limits.close()
