"""Prometheus export of :meth:`Database.get_stats <litestar_db.database.Database.get_stats>` (extra ``metrics``).

A custom collector reads the figures synchronously at scrape time (no background task, nothing to keep in step):

==================================== ======= ==================================================================
name                                 type    labels (besides ``database`` = registry alias, ``engine``)
==================================== ======= ==================================================================
``db_pool_connections``              gauge   ``state``: ``checked_out``, ``idle``, ``overflow``, ``waiting``
``db_pool_size``                     gauge   configured persistent connections (``pool.min_size``)
``db_pool_max_size``                 gauge   configured upper bound (``pool.max_size``)
``db_pool_checkout_timeouts_total``  counter checkouts that gave up after ``pool.timeout``
``db_connections_created_total``     counter server connections opened
``db_connections_invalidated_total`` counter connections discarded as broken or stale
``db_queries_total``                 counter statements executed
``db_query_errors_total``            counter driver errors
``db_slow_queries_total``            counter statements slower than ``slow_query_seconds``
``db_transactions_total``            counter ``outcome``: ``committed``, ``rolled_back``
``db_routed_reads_total``            counter reads routed to the engine by the read/write split
``db_replica_lag_seconds``           gauge   replicas, when measured
``db_replica_lag_bytes``             gauge   replicas, when measured
``db_replica_ejected``               gauge   replicas: 1 while out of rotation
``db_transactions_retried_total``    counter ``database`` only: units of work re-run
==================================== ======= ==================================================================

:class:`~litestar_db.litestar.plugin.DatabasePlugin` calls :func:`register_collector` for prometheus-client's
default registry when the package is installed, so Litestar's integration serves the figures: add
``litestar.plugins.prometheus.PrometheusController`` to the app's route handlers and scrape ``GET /metrics``::

    app = Litestar(route_handlers=[PrometheusController], plugins=[DatabasePlugin(config)])

Outside Litestar call ``register_collector()`` once (further calls return the same collector) and serve
``prometheus_client.generate_latest()``.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from litestar_db.registry import _registry

if TYPE_CHECKING:
    from litestar_db.database import Database

__all__ = ("DatabaseCollector", "register_collector")

_LABELS = ["database", "engine"]
_collectors: weakref.WeakKeyDictionary[CollectorRegistry, DatabaseCollector] = weakref.WeakKeyDictionary()


def _registered_databases() -> Mapping[str, Database]:
    return dict(_registry)


class DatabaseCollector(Collector):
    """Collects the statistics of databases at scrape time.

    Args:
        databases: Returns the databases to export keyed by alias; the module registry
            (:func:`litestar_db.get_database`'s, filled by the plugin while an app runs) when ``None``.
    """

    def __init__(self, databases: Callable[[], Mapping[str, Database]] | None = None) -> None:
        self._databases = databases or _registered_databases

    def describe(self) -> Iterable[Metric]:
        """The metric families without samples (lets a registry reject a second collector of the same names).

        Returns:
            The families :meth:`collect` yields.
        """
        return list(self._families().values())

    def collect(self) -> Iterable[Metric]:
        """Read every database's figures now.

        Returns:
            The metric families with one sample per database, engine (and state or outcome).
        """
        families = self._families()
        for alias, db in sorted(self._databases().items()):
            stats = db.stats_snapshot()
            families["retried"].add_metric([alias], stats.transactions_retried)
            for eng in stats.engines:
                labels = [alias, eng.name]
                pool = eng.pool
                for state, value in (
                    ("checked_out", pool.checked_out),
                    ("idle", pool.checked_in),
                    ("overflow", pool.overflow),
                    ("waiting", pool.waiting),
                ):
                    families["connections"].add_metric([*labels, state], value)
                families["size"].add_metric(labels, pool.size)
                families["max_size"].add_metric(labels, pool.max_size)
                families["timeouts"].add_metric(labels, pool.checkout_timeouts)
                families["created"].add_metric(labels, pool.connections_created)
                families["invalidated"].add_metric(labels, pool.connections_invalidated)
                families["queries"].add_metric(labels, eng.queries)
                families["errors"].add_metric(labels, eng.errors)
                families["slow"].add_metric(labels, eng.slow_queries)
                families["transactions"].add_metric([*labels, "committed"], eng.commits)
                families["transactions"].add_metric([*labels, "rolled_back"], eng.rollbacks)
                families["routed"].add_metric(labels, eng.routed_reads)
                if eng.role == "replica":
                    families["ejected"].add_metric(labels, 0 if eng.healthy else 1)
                    if eng.lag_seconds is not None:
                        families["lag_seconds"].add_metric(labels, eng.lag_seconds)
                    if eng.lag_bytes is not None:
                        families["lag_bytes"].add_metric(labels, eng.lag_bytes)
        return list(families.values())

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        gauge, counter = GaugeMetricFamily, CounterMetricFamily
        return {
            "connections": gauge(
                "db_pool_connections", "Pool connections by state", labels=[*_LABELS, "state"]
            ),
            "size": gauge("db_pool_size", "Configured persistent pool connections", labels=_LABELS),
            "max_size": gauge("db_pool_max_size", "Configured maximum pool connections", labels=_LABELS),
            "timeouts": counter(
                "db_pool_checkout_timeouts", "Checkouts that timed out waiting for a connection", labels=_LABELS
            ),
            "created": counter("db_connections_created", "Server connections opened", labels=_LABELS),
            "invalidated": counter(
                "db_connections_invalidated", "Connections discarded as broken or stale", labels=_LABELS
            ),
            "queries": counter("db_queries", "Statements executed", labels=_LABELS),
            "errors": counter("db_query_errors", "Driver errors (statements and connection attempts)", labels=_LABELS),
            "slow": counter("db_slow_queries", "Statements slower than slow_query_seconds", labels=_LABELS),
            "transactions": counter("db_transactions", "Transactions by outcome", labels=[*_LABELS, "outcome"]),
            "routed": counter("db_routed_reads", "Reads routed by the read/write split", labels=_LABELS),
            "lag_seconds": gauge("db_replica_lag_seconds", "Replica replay lag in seconds", labels=_LABELS),
            "lag_bytes": gauge("db_replica_lag_bytes", "Replica replay lag in bytes of WAL", labels=_LABELS),
            "ejected": gauge("db_replica_ejected", "1 while the replica is out of rotation", labels=_LABELS),
            "retried": counter(
                "db_transactions_retried", "Units of work re-run after a retryable error", labels=["database"]
            ),
        }  # fmt: skip


def register_collector(registry: CollectorRegistry = REGISTRY) -> DatabaseCollector:
    """Register one :class:`DatabaseCollector` (reading the module registry) on ``registry``, once.

    Safe to call from every app started in a process: later calls return the collector already registered.

    Args:
        registry: A prometheus-client registry (the default one that ``PrometheusController`` serves).

    Returns:
        The registered collector.
    """
    collector = _collectors.get(registry)
    if collector is None:
        collector = DatabaseCollector()
        registry.register(collector)
        _collectors[registry] = collector
    return collector
