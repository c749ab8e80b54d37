"""Owns finishing a promotion or rollback whose process died while holding the lock (SIGKILL, a lost machine).

The dead holder wrote its plan on the lock before changing anything (``registry.lock``): the action, the
aliases and versions, the history event and where it exports. Whoever takes the lock over reads the
registry and makes it say one consistent thing:

- production holds the plan's version: the change happened, so what may be missing after it is done —
  ``previous`` on the replaced version, the history event (found by its ``promotion_id``), the tarball;
- production does not: the change did not happen, so a ``previous`` alias moved alone is put back.

Every step checks before it writes, so finishing twice (killed again while finishing) is harmless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from registry import history
from registry.export import export_version, exported_version
from registry.versions import Registry, mlflow_errors


def _set_alias(registry: Registry, alias: str, version: str | None) -> None:
    with mlflow_errors(f"restoring @{alias} of '{registry.name}'"):
        if version is None:
            try:
                registry.client.delete_registered_model_alias(registry.name, alias)
            except MlflowException:
                pass  # already absent
        else:
            registry.client.set_registered_model_alias(registry.name, alias, version)


def finish(registry: Registry, plan: dict[str, Any], holder: str, *, how: str = "which died holding the lock") -> str:
    """Make the registry consistent with how far ``plan`` got; returns one line saying what was done."""
    alias, previous_alias, to = plan["alias"], plan["previous_alias"], str(plan["to"])
    replaced = None if plan.get("from") is None else str(plan["from"])
    production = registry.by_alias(alias)
    previous = registry.by_alias(previous_alias)
    what = f"the {plan['action']} of version {to} by {holder}, {how}"
    if production is None or str(production.version) != to:
        if replaced is not None and previous is not None and str(previous.version) == replaced:
            _set_alias(registry, previous_alias, plan.get("previous_before"))
            return f"{what}, had moved only @{previous_alias}: put back; nothing else had changed"
        return f"{what}, had changed nothing"
    done = []
    if replaced is not None and (previous is None or str(previous.version) != replaced):
        _set_alias(registry, previous_alias, replaced)
        done.append(f"@{previous_alias} moved to version {replaced}")
    if not any(e.get("promotion_id") == plan["id"] for e in history.read(registry)):
        history.append(registry, {**plan["event"], "completed_by": history.who()})
        done.append("its history entry recorded")
    if plan.get("export") and exported_version(Path(plan["export"]), registry.name) != to:
        export_version(registry, production, Path(plan["export"]))
        done.append(f"version {to} exported to {plan['export']}")
    return f"{what}, had moved the aliases; finished: {', '.join(done) or 'nothing was missing'}"
