"""Every saga type the platform runs, by name (what StartSaga's `saga_type` names)."""

from hubs.saga.definition import SagaDefinition
from sagas.inbound_message.definition import INBOUND_MESSAGE
from sagas.tenant_onboarding.definition import TENANT_ONBOARDING

DEFINITIONS: dict[str, SagaDefinition] = {d.name: d for d in (TENANT_ONBOARDING, INBOUND_MESSAGE)}
