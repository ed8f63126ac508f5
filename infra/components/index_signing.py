"""The registry index's signing key (Cloud KMS, bootstrap stack) and its public key for the service.

Why Cloud KMS: the private key never leaves it, so "who can promote" is exactly "who holds
cloudkms.cryptoKeyVersions.useToSign on this key" (contracts/index_signature.py says what is signed). Why the
bootstrap stack: like the CMEK key, a KMS key is never deleted, and the deployer that applies the environment
stack must not be able to grant itself the signer role. SOFTWARE protection: the control is who may sign (IAM),
which an HSM does not change; HSM would cost about 40x per key version.
Asymmetric keys have no automatic rotation: a new key version means a new public key for the service, so
rotation is a deliberate step (create version 2, point `IndexPublicKey` at it, redeploy).
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.data_google_kms_crypto_key_version import DataGoogleKmsCryptoKeyVersion
from cdktf_cdktf_provider_google.kms_crypto_key import KmsCryptoKey
from cdktf_cdktf_provider_google.kms_crypto_key_iam_member import KmsCryptoKeyIamMember
from constructs import Construct

from contracts.index_signature import ALGORITHM, INDEX_SIGNING_KEY_ID
from infra.components.apis import Apis
from infra.components.kms import DESTROY_SCHEDULED_DURATION, CmekKey, allow_destroy
from infra.naming import Names
from infra.teardown import TeardownPolicy

SIGNER = "roles/cloudkms.signerVerifier"
PUBLIC_KEY_VIEWER = "roles/cloudkms.publicKeyViewer"
KEY_VERSION = 1  # the version the service trusts; see the module docstring for rotation


class IndexSigningKey(Construct):
    """The signing key beside the CMEK key, the signer role for the one account that promotes, and the public key
    for the accounts that only read it: the deployer plans serving-<env> (which reads the public key) and restores
    the registry index (`trainer registry restore` checks the kept copies' signatures)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        names: Names,
        teardown: TeardownPolicy,
        cmek: CmekKey,
        signers: list[str],
        viewers: list[str],
    ):
        super().__init__(scope, id)
        self.key = KmsCryptoKey(
            self,
            "key",
            name=INDEX_SIGNING_KEY_ID,
            key_ring=cmek.key_ring.id,
            purpose="ASYMMETRIC_SIGN",
            version_template={"algorithm": ALGORITHM, "protection_level": "SOFTWARE"},
            labels=names.labels,
            lifecycle=teardown.lifecycle(),
            destroy_scheduled_duration=DESTROY_SCHEDULED_DURATION,
        )
        allow_destroy(self.key, names, teardown)
        self.signers = [
            KmsCryptoKeyIamMember(self, f"signer-{i}", crypto_key_id=self.key.id, role=SIGNER, member=member)
            for i, member in enumerate(signers)
        ]
        self.viewers = [
            KmsCryptoKeyIamMember(
                self, f"public-key-viewer-{i}", crypto_key_id=self.key.id, role=PUBLIC_KEY_VIEWER, member=member
            )
            for i, member in enumerate(viewers)
        ]


def index_public_key(scope: Construct, names: Names, apis: Apis) -> str:
    """The PEM public key of the signing key's trusted version, for the service's INDEX_PUBLIC_KEY (serving stack:
    read at plan time; the bootstrap stack made the key and `<env>` enabled Cloud KMS before this stack runs)."""
    version = DataGoogleKmsCryptoKeyVersion(
        scope,
        "index_signing_public_key",
        crypto_key=names.index_signing_key_name,
        version=KEY_VERSION,
        depends_on=[apis["cloudkms.googleapis.com"]],
    )
    return version.public_key.get(0).pem
