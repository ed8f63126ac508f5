"""Cloud Build triggers running cloudbuild.yaml: pull-request checks (tests, synth, policy scan) as a low-privilege
account, and deploys (build, push, `cdktf deploy`) as the deployer on the configured branch or tag.

Why two accounts: a pull request runs code nobody has reviewed yet, so it must not hold deploy rights.
The GitHub repository must be connected to Cloud Build once by hand (infra/README.md, bootstrap).
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.cloudbuild_trigger import CloudbuildTrigger
from constructs import Construct

from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.naming import Names

BUILD_FILE = "cloudbuild.yaml"
IGNORED_FILES = ["**/*.md", "docs/**"]


class CiCd(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis, identity: Identity):
        super().__init__(scope, id)
        infra = names.settings.infra
        repository = {"owner": infra.github_owner, "name": infra.github_repository}
        after = [apis["cloudbuild.googleapis.com"], *identity.act_as]
        self.triggers = {}
        if infra.pull_request_trigger:
            self.triggers["checks"] = CloudbuildTrigger(
                self,
                "pull-request-checks",
                name="fmnist-pull-request-checks",
                location="global",
                description="tests, cdktf synth and checkov policy scan on every pull request",
                github={
                    **repository,
                    "pull_request": {
                        "branch": ".*",
                        "comment_control": "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY",
                    },
                },
                filename=BUILD_FILE,
                ignored_files=IGNORED_FILES,
                substitutions={"_PIPELINE": "checks", "_ENV": names.env},
                service_account=f"projects/{names.project}/serviceAccounts/{identity.email('checks')}",
                depends_on=after,
            )
        push = {"branch": infra.deploy_branch} if infra.deploy_branch else {"tag": infra.deploy_tag}
        self.triggers["deploy"] = CloudbuildTrigger(
            self,
            "deploy",
            name="fmnist-deploy",
            location="global",
            description=f"build, push and cdktf deploy of {names.env} on {push}",
            github={**repository, "push": push},
            filename=BUILD_FILE,
            ignored_files=IGNORED_FILES,
            substitutions={"_PIPELINE": "deploy", "_ENV": names.env},
            service_account=f"projects/{names.project}/serviceAccounts/{identity.email('deployer')}",
            approval_config={"approval_required": infra.deploy_requires_approval},
            depends_on=after,
        )
