"""The Vertex AI endpoint (numeric id from config, CMEK) and the TensorBoard that Vertex AI Experiments log to.

Models are uploaded and deployed to the endpoint by the SDK (`python -m trainer deploy-model`), which Terraform
cannot do; `python -m trainer undeploy-all` must run before `cdktf destroy` (see infra/README.md).
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.vertex_ai_endpoint import VertexAiEndpoint
from cdktf_cdktf_provider_google.vertex_ai_tensorboard import VertexAiTensorboard
from constructs import Construct

from infra.components.apis import Apis
from infra.components.kms import KeyGrants
from infra.naming import Names
from infra.suppressions import suppress


class Vertex(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis, kms: KeyGrants):
        super().__init__(scope, id)
        after = [apis["aiplatform.googleapis.com"], kms.ready["aiplatform"]]
        self.endpoint = VertexAiEndpoint(
            self,
            "endpoint",
            name=names.endpoint_id,
            display_name=names.display_name,
            location=names.region,
            region=names.region,
            description="Fashion-MNIST classifier (models deployed by the SDK)",
            labels=names.labels,
            encryption_spec={"kms_key_name": kms.key_id},
            depends_on=after,
        )
        suppress(
            self.endpoint,
            "CKV2_GCP_33",
            "Predictions need IAM (aiplatform.endpoints.predict) on this endpoint; a private endpoint needs a "
            "VPC with peering or Private Service Connect and a forwarding rule per client, which this "
            "VPC-less project does not have.",
        )
        self.tensorboard = VertexAiTensorboard(
            self,
            "tensorboard",
            display_name=names.display_name,
            region=names.region,
            description="Vertex AI Experiments for the trainer",
            labels=names.labels,
            encryption_spec={"kms_key_name": kms.key_id},
            depends_on=after,
        )
