"""A monthly billing budget on this project: 50/90/100% of actual and 100% of forecast spend, to a Pub/Sub topic
and the alert email channel.

The Billing Budget API needs a quota project when called with user credentials: the budget alone uses the
`billing` provider alias, which sets `user_project_override` and `billing_project` (infra/stack.py); the budgets
API is enabled in this project. The currency comes from config (it must equal the billing account's): unset, the
field is left out, and the deploy guard (infra/preflight.py) stops a deploy until it is set.
"""

from __future__ import annotations

from cdktf import TerraformProvider
from cdktf_cdktf_provider_google.billing_budget import BillingBudget, BillingBudgetThresholdRules
from cdktf_cdktf_provider_google.data_google_project import DataGoogleProject
from constructs import Construct

from infra.components.apis import Apis
from infra.components.kms import KeyGrants
from infra.components.monitoring import Monitoring
from infra.components.waits import API_PROPAGATION, propagation_wait
from infra.naming import Names

THRESHOLDS = ((0.5, "CURRENT_SPEND"), (0.9, "CURRENT_SPEND"), (1.0, "CURRENT_SPEND"), (1.0, "FORECASTED_SPEND"))
# Cloud Billing publishes budget notifications as this Google-owned account.
BUDGET_PUBLISHER = "serviceAccount:billing-budget-alert@system.gserviceaccount.com"


class MissingBillingAccount(ValueError):
    """A gcp environment has no billing account for its budget."""


class Budget(Construct):
    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        apis: Apis,
        kms: KeyGrants,
        monitoring: Monitoring,
        project: DataGoogleProject,
        billing_provider: TerraformProvider,
    ):
        super().__init__(scope, id)
        infra = names.settings.infra
        if not infra.billing_account:
            raise MissingBillingAccount(
                f"environment '{names.env}' has no infra.billing_account: set it in config/{names.env}.yaml or "
                f"FMNIST_INFRA__BILLING_ACCOUNT=XXXXXX-XXXXXX-XXXXXX (`gcloud billing accounts list`)"
            )
        self.topic = kms.topic(self, "topic", name=names.budget_topic, names=names)
        self.topic.allow_publisher("billing-publisher", BUDGET_PUBLISHER)
        units = int(infra.budget_amount)
        self.budget = BillingBudget(
            self,
            "budget",
            billing_account=infra.billing_account,
            display_name=f"fmnist-mlops {names.env}",
            budget_filter={
                "projects": [f"projects/{project.number}"],
                "calendar_period": "MONTH",
                "credit_types_treatment": "INCLUDE_ALL_CREDITS",
            },
            amount={
                "specified_amount": {
                    **({"currency_code": infra.budget_currency} if infra.budget_currency else {}),
                    "units": str(units),
                    "nanos": round((infra.budget_amount - units) * 1e9),
                }
            },
            threshold_rules=[
                BillingBudgetThresholdRules(threshold_percent=share, spend_basis=basis) for share, basis in THRESHOLDS
            ],
            all_updates_rule={
                "pubsub_topic": self.topic.id,
                "monitoring_notification_channels": [monitoring.email_channel.id],
                "disable_default_iam_recipients": False,
            },
            # Depending on every enabled API says "this budget watches what the stack switches on"; the custom
            # checkov policy CKV2_FMNIST_3 checks that edge for each google_project_service.
            # The alias names this project as quota project: its Billing Budget API, enabled in the same apply,
            # must have propagated first.
            depends_on=[
                *apis.all,
                propagation_wait(
                    self,
                    "quota-api-propagated",
                    after=[apis["billingbudgets.googleapis.com"]],
                    duration=API_PROPAGATION,
                ),
            ],
            provider=billing_provider,
        )
