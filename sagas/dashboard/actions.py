"""Operator actions on sagas, sent as saga-hub commands (RetryStep, ResetToStep,
CompensateFromHere, AbortSaga) through the one CommandClient, with the operator's
principal id as actor and operator. The saga hub decides and records them as
events; this module only builds and sends the commands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from infra.command_client import CommandClient, new_meta


@dataclass(frozen=True)
class ActionOutcome:
    accepted: bool
    detail: str
    """The rejection rule and reason, or the new saga version."""


class SagaActions(Protocol):
    async def act(
        self, action: str, *, saga_id: str, tenant_id: str, step: str, operator: str, reason: str, correlation_id: str
    ) -> ActionOutcome: ...


class CommandSagaActions:
    """The real implementation: one command per action, awaited until the saga
    hub answers (accepted with a version, or rejected with its rule)."""

    def __init__(self, client: CommandClient, timeout_s: float = 15.0):
        self.client, self.timeout_s = client, timeout_s

    async def act(
        self, action: str, *, saga_id: str, tenant_id: str, step: str, operator: str, reason: str, correlation_id: str
    ) -> ActionOutcome:
        from hubs.saga import commands  # the saga hub is optional until its issue lands

        meta = new_meta(saga_id, tenant_id, actor=operator, correlation_id=correlation_id or None)
        if action == "retry":
            command = commands.RetryStep(meta=meta, step=step, operator=operator, reason=reason)
        elif action == "reset":
            command = commands.ResetToStep(meta=meta, step=step, operator=operator, reason=reason)
        elif action == "compensate":
            command = commands.CompensateFromHere(meta=meta, operator=operator, reason=reason)
        elif action == "abort":
            command = commands.AbortSaga(meta=meta, operator=operator, reason=reason)
        else:
            raise ValueError(f"unknown action {action!r}")
        result = await self.client.send(command, timeout=self.timeout_s)
        if result.accepted:
            return ActionOutcome(True, f"version {result.version}")
        return ActionOutcome(False, f"{result.rejection}: {result.reason}")
