"""The Saga hub as a process manager: what its processor sends with a request
event, and how it reads the answers that come back — pure, no I/O.

* `Outbox`: a StepRequested / CompensationRequested event carries the step's
  command; the processor sends it in the same Kafka transaction as the event —
  to `<hub>.commands` for a hub, as a `SpokeRequested` on `spoke.<name>.requests`
  for a spoke — with the saga's reply address on it (infra.hub.Dispatch). A
  request is sent exactly when it is recorded: no driver hop in between, nothing
  sent that the saga did not record, nothing recorded that was not sent.
* `translate`: the answers on `saga.commands` (a hub processor's CommandResult
  with the request named in its `reply_ref` header, a spoke's SpokeOutcome naming
  its request) become RecordStepResult, with the id the saga driver always gave
  it (derived from saga, step, kind and attempt): an answer read twice, or sent
  by both a new processor and an old driver during an upgrade, is decided once.

* `Starts`: the outbox of a hub whose event starts a saga (`Trigger.facts`: the
  MessageRouted that starts the inbound-message saga): StartSaga goes to
  `saga.commands` in the transaction that records the event, with the id the
  driver always gave it, so a start sent by both during an upgrade is one saga.

The saga driver (sagas/driver.py) keeps the timers, the triggers of records that
carry no facts of their own, and the requests of events an older processor
recorded without sending (no `dispatched` header): in-flight sagas of the old
shape finish after an upgrade."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from hubs.saga.commands import RecordStepResult, StartSaga
from hubs.saga.definition import ACTION, COMPENSATION, SAGA_NAMESPACE, SagaDefinition
from hubs.saga.events import COMPENSATION_REQUESTED, REQUESTS
from infra import tracing
from infra.hub import OUTCOME_SCHEMA, REPLY_REF, REQUEST_SCHEMA, RESULT_SCHEMA, Dispatch, command_to_record, envelope
from schemas.contracts import CommandMeta

ACTOR = "saga-driver"
"""The actor of the requests and answers the saga driver sends."""
PROCESS_MANAGER = "saga-processor"
"""The actor of the requests the Saga hub's processor sends and the answers it reads."""
MAX_DETAIL = 500


def derived_command_id(*parts: object) -> str:
    return str(uuid.uuid5(SAGA_NAMESPACE, "/".join(str(p) for p in parts)))


def result_id(saga_id: str, step: str, kind: str, attempt: int) -> str:
    """The RecordStepResult id of one request's answer."""
    return derived_command_id(saga_id, step, kind, attempt, "result")


def command_record(command_json: str) -> dict[str, Any]:
    """A request event's `command_json` as the command's Avro record."""
    record = json.loads(command_json)
    record["meta"]["issued_at"] = datetime.fromisoformat(record["meta"]["issued_at"])
    return record


def hub_answer(
    accepted: bool, version: int, rejection: str, reason: str, event_types: Collection[str], duplicate: bool
) -> tuple[bool, str, str]:
    """(succeeded, detail, result_json) of a hub's answer to a step's command."""
    if accepted:
        detail = f"accepted at version {version}" + (" (duplicate)" if duplicate else "")
    else:
        detail = f"{rejection}: {reason}"
    body: dict[str, Any] = {"version": version, "event_types": list(event_types), "duplicate": duplicate}
    if not accepted:
        body["rejection"] = rejection
    return accepted, detail[:MAX_DETAIL], json.dumps(body, sort_keys=True)


def spoke_answer(outcome: Mapping[str, Any], issued_at: datetime | None = None, actor: str = ACTOR) -> RecordStepResult | None:
    """The RecordStepResult a spoke's SpokeOutcome answers, or None (a spoke's
    own reaction or an interim try, not an answer to a saga request)."""
    ref = outcome.get("request")
    if ref is None:
        return None
    env = outcome["envelope"]
    detail = outcome["detail"] if outcome["succeeded"] else f"{outcome['error_code'] or 'failed'}: {outcome['detail']}"
    return RecordStepResult(
        answer_meta(
            ref["saga_id"],
            ref["step"],
            ref["kind"],
            int(ref["attempt"]),
            env["tenant_id"],
            env["correlation_id"],
            env["event_id"],
            issued_at,
            actor,
        ),
        ref["step"],
        int(ref["attempt"]),
        outcome["succeeded"],
        detail[:MAX_DETAIL],
        outcome.get("result_json") or "{}",
    )


def answer_meta(
    saga_id: str,
    step: str,
    kind: str,
    attempt: int,
    tenant_id: str,
    correlation_id: str,
    causation_id: str,
    issued_at: datetime | None = None,
    actor: str = ACTOR,
) -> CommandMeta:
    """The meta of the RecordStepResult that answers one request (its id derived
    from saga, step, kind and attempt): the same whoever records the answer."""
    extra = {"issued_at": issued_at} if issued_at is not None else {}
    return CommandMeta(
        command_id=result_id(saga_id, step, kind, attempt),
        aggregate_id=saga_id,
        tenant_id=tenant_id,
        correlation_id=correlation_id,
        causation_id=causation_id,
        actor=actor,
        **extra,
    )


def spoke_request(event: Mapping[str, Any], spoke: str, kind: str, actor: str = ACTOR) -> dict[str, Any]:
    """The SpokeRequested record of a request event whose target is `spoke.<spoke>`."""
    env = event["envelope"]
    command = json.loads(event["command_json"])
    return {
        "envelope": envelope(
            REQUEST_SCHEMA,
            event_id=derived_command_id(event["command_id"], "spoke-request"),
            aggregate_id=env["aggregate_id"],
            aggregate_version=env["aggregate_version"],
            tenant_id=env["tenant_id"],
            correlation_id=env["correlation_id"],
            causation_id=env["event_id"],
            occurred_at=env["occurred_at"],
            actor=actor,
        ),
        "request": {
            "request_id": event["command_id"],
            "saga_id": env["aggregate_id"],
            "step": event["step"],
            "attempt": event["attempt"],
            "kind": kind,
        },
        "spoke": spoke,
        "action": event["command_type"].rsplit(".", 1)[-1],
        "payload_json": command.get("payload_json", "{}"),
        "deadline_at": event["deadline_at"],
    }


class Outbox:
    """The Saga hub's `HubSpec.outbox`: sends a request event's command to the hub
    or spoke it names, if this installation has it. A target it does not have is
    not sent: the step fails at its deadline, visibly, as before."""

    def __init__(self, hubs: Collection[str], spokes: Collection[str]):
        self.hubs, self.spokes = frozenset(hubs), frozenset(spokes)

    def __call__(self, name: str, event: Mapping[str, Any]) -> list[Dispatch]:
        if name not in REQUESTS:
            return []
        target = event["target_hub"]
        env = event["envelope"]
        kind = COMPENSATION if name == COMPENSATION_REQUESTED else ACTION
        if target.startswith("spoke.") and (spoke := target.removeprefix("spoke.")) in self.spokes:
            request = spoke_request(event, spoke, kind, PROCESS_MANAGER)
            return [Dispatch(f"spoke.{spoke}.requests", env["aggregate_id"], REQUEST_SCHEMA, request, reply_ref=b"")]
        if target in self.hubs:
            record = command_record(event["command_json"])
            ref = {
                "command_id": event["command_id"],
                "saga_id": env["aggregate_id"],
                "tenant_id": env["tenant_id"],
                "step": event["step"],
                "attempt": event["attempt"],
                "kind": kind,
            }
            return [
                Dispatch(
                    f"{target}.commands",
                    record["meta"]["aggregate_id"],
                    event["command_type"],
                    record,
                    reply_ref=json.dumps(ref, sort_keys=True).encode(),
                )
            ]
        return []


def start_command(
    definition: SagaDefinition, record: Mapping[str, Any], body: Mapping[str, Any], actor: str, trace_id: str = ""
) -> StartSaga:
    """The StartSaga a trigger record asks for: its ids derived from the record, so
    whoever sends it (a hub's outbox, the driver) sends the same command. `trace_id`:
    the trace the trigger is handled in, recorded with the saga (the dashboard's link)."""
    env = record["envelope"]
    saga_id = definition.trigger.saga_id(record)
    meta = CommandMeta(
        command_id=derived_command_id(saga_id, "start"),
        aggregate_id=saga_id,
        tenant_id=env["tenant_id"],
        correlation_id=env["correlation_id"],
        causation_id=env["event_id"],
        actor=actor,
    )
    return StartSaga(meta, definition.name, json.dumps(body, sort_keys=True), trace_id)


class Starts:
    """`HubSpec.outbox` of a hub whose events start sagas by themselves: for each
    definition triggered by one of its events and able to read its facts from the
    record (`Trigger.facts`), the StartSaga goes out in the event's transaction."""

    def __init__(self, hub: str, definitions: Iterable[SagaDefinition], settings: Any):
        self.settings = settings
        self.by_event: dict[str, list[SagaDefinition]] = {}
        for d in definitions:
            if d.trigger is not None and d.trigger.facts is not None and d.trigger.topic == f"{hub}.events":
                self.by_event.setdefault(d.trigger.event, []).append(d)

    def __bool__(self) -> bool:
        return bool(self.by_event)

    def __call__(self, name: str, record: Mapping[str, Any]) -> list[Dispatch]:
        sent = []
        for definition in self.by_event.get(name, ()):
            trigger = definition.trigger
            facts = trigger.facts(self.settings, record)
            body = trigger.start(record, facts) if facts is not None else None
            if body is None:
                continue
            command = start_command(definition, record, body, PROCESS_MANAGER, tracing.current_trace_id())
            sent.append(Dispatch("saga.commands", command.meta.aggregate_id, StartSaga.avro_name(), command_to_record(command)))
        return sent


def chained(*outboxes: Callable[[str, Mapping[str, Any]], Sequence[Dispatch]] | None):
    """One outbox sending what each of `outboxes` sends (None ones skipped)."""
    present = [o for o in outboxes if o]
    if len(present) <= 1:
        return present[0] if present else None
    return lambda name, record: [d for outbox in present for d in outbox(name, record)]


def translate(name: str, record: Mapping[str, Any], headers: Mapping[str, bytes]) -> RecordStepResult | None:
    """The Saga hub's `HubSpec.translate`: an answer on `saga.commands` → RecordStepResult."""
    if name == OUTCOME_SCHEMA:
        return spoke_answer(record, record["envelope"]["occurred_at"], PROCESS_MANAGER)
    if name != RESULT_SCHEMA or REPLY_REF not in headers:
        return None
    try:
        ref = json.loads(headers[REPLY_REF])
        saga_id, tenant_id, step, attempt, kind = ref["saga_id"], ref["tenant_id"], ref["step"], int(ref["attempt"]), ref["kind"]
        if ref["command_id"] != record["command_id"]:
            return None  # not the answer to the request it names: a forged or mixed-up reference
    except (ValueError, KeyError, TypeError):
        return None
    succeeded, detail, result_json = hub_answer(
        record["outcome"] == "ACCEPTED",
        record["version"],
        record["rejection"],
        record["reason"],
        record["event_types"],
        record["duplicate"],
    )
    meta = answer_meta(
        saga_id,
        step,
        kind,
        attempt,
        tenant_id,
        record["correlation_id"],
        record["command_id"],
        record["decided_at"],
        PROCESS_MANAGER,
    )
    return RecordStepResult(meta, step, attempt, succeeded, detail, result_json)
