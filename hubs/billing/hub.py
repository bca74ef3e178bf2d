"""The Billing hub's declaration to the shared machinery (processor, CLI). The CLI
verbs are the billing provider's ingestion entry for now: they must be sent with
`--actor billing-provider` or the hub refuses them (NotBillingProvider)."""

from hubs.billing.aggregate import Entitlement, handle
from hubs.billing.commands import COMMANDS, ApplyEntitlement, CancelEntitlement, ReportUsage
from infra.hub import HubSpec

HUB = HubSpec(
    name="billing",
    grpc_port=50055,
    ops_index=5,
    aggregate=Entitlement,
    commands=COMMANDS,
    handle=handle,
    cli_verbs={
        "apply-entitlement": ApplyEntitlement,
        "cancel-entitlement": CancelEntitlement,
        "report-usage": ReportUsage,
    },
    aggregate_option="entitlement",
)
