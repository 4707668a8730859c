"""What `poller status` shows, read from the store alone (it works while the daemon runs).

On a PostgreSQL store shared by replicas, ``replicas`` lists every live replica — leader or
standby, its heartbeat's age and the workspaces it leads — and ``leases`` says which
replica polls which workspace (both empty on SQLite, where one daemon polls everything).
"""

from __future__ import annotations

from typing import Any

from poller import config as config_mod
from poller import render, utils
from poller.store import Ledger, SinkStates, Store, all_leases, live_replicas


def gather(
    config: config_mod.Config, store: Store, ledger: Ledger, sink_states: SinkStates
) -> dict[str, Any]:
    """Sources (last poll, tracked items, active jobs, errors), sinks (outbox figures), leases."""
    now = utils.utcnow()
    states = {(s.workspace, s.source): s for s in store.source_states()}
    sources = []
    for ws in config.workspaces:
        for name in ws.sources.enabled():
            state = states.get((ws.name, name))
            tracked, active = store.counts(ws.name, name)
            sources.append(
                {
                    "workspace": ws.name,
                    "source": name,
                    "last_poll_at": state.last_poll_at if state else None,
                    "last_success_at": state.last_success_at if state else None,
                    "tracked": tracked,
                    "active": active,
                    "error_streak": state.error_streak if state else 0,
                    "last_error": state.last_error if state else None,
                    "held_deletions": state.held_count if state else 0,
                }
            )
    stats = ledger.sink_stats()
    names = [s.name for s in config.sinks] + sorted(set(stats) - {s.name for s in config.sinks})
    sinks = []
    for name in names:
        st = stats.get(name)
        sink_state = sink_states.get(name)
        sinks.append(
            {
                "sink": name,
                "configured": name in {s.name for s in config.sinks},
                "enabled": sink_state.enabled,
                "circuit": "open" if sink_state.circuit_open else "closed",
                "pending": st.pending if st else 0,
                "failing": st.failing if st else 0,
                "dead": st.dead if st else 0,
                "delivered": st.delivered if st else 0,
                "oldest_pending": render.age(st.oldest_pending_at, now) if st else None,
                "disabled_reason": sink_state.disabled_reason,
            }
        )
    leases = [
        {
            "workspace": lease.workspace,
            "holder": lease.holder,
            "epoch": lease.epoch,
            "expires_at": lease.expires_at,
        }
        for lease in all_leases(store.engine)
    ]
    ttl = config.ha.lease_ttl
    replicas = [
        {
            "replica": r.replica,
            "role": "leader" if r.leads else "standby",
            # a heartbeat sets the expiry a TTL ahead (every replica reads this config)
            "heartbeat_age_s": round(max(0.0, ttl - r.expires_in), 1),
            "started_at": r.started_at,
            "leads": list(r.leads),
        }
        for r in live_replicas(store.engine)
    ]
    return {
        "now": now,
        "sources": sources,
        "sinks": sinks,
        "replicas": replicas,
        "leases": leases,
    }
