"""Cloud Build triggers running the cloudbuild*.yaml files: pull-request checks (tests, synth, policy scan) as a
low-privilege account, the pull-request plan (`cdktf diff`) as the read-only planner, and deploys (build, push,
`cdktf deploy`) as the deployer on the configured branch or tag.

Why three accounts: a pull request runs code nobody has reviewed yet, so it must not hold deploy rights; the tests
must not even read the project, and the plan reads it but writes nothing.
The GitHub repository must be connected to Cloud Build once by hand (infra/README.md, bootstrap).
Why the plan waits for an approval (issue 25): a GitHub trigger reads its build file from the pull request's own
commit, and `cdktf diff` executes the pull request's infra/ code, so whoever opens a pull request would run code as
the planner, which reads every IAM policy and the whole state. Neither the build file (which Cloud Build takes from
the pull request) nor a `/gcbrun` comment (which any collaborator can give, and which is GitHub's record, not
Google Cloud's) closes that; `approval_config` makes every plan build wait until a holder of
roles/cloudbuild.builds.approver has read the diff and approved it, in Cloud Audit Logs. The checks build runs
unapproved: its account reads nothing in the project.
"""

from __future__ import annotations

from cdktf_cdktf_provider_google.cloudbuild_trigger import CloudbuildTrigger
from constructs import Construct

from contracts.cloud import BUILD_TRIGGERS
from infra.components.apis import Apis
from infra.components.identity import Identity
from infra.naming import Names

# One build file per pipeline, so that each account runs only its own steps.
BUILD_FILES = {"checks": "cloudbuild.yaml", "plan": "cloudbuild-plan.yaml", "deploy": "cloudbuild-deploy.yaml"}
IGNORED_FILES = ["**/*.md", "docs/**"]
PLAN_REQUIRES_APPROVAL = True  # pull-request code runs as the planner: a maintainer approves each plan build


class CiCd(Construct):
    def __init__(self, scope: Construct, id: str, *, names: Names, apis: Apis, identity: Identity):
        super().__init__(scope, id)
        infra = names.settings.infra
        repository = {"owner": infra.github_owner, "name": infra.github_repository}
        after = [apis["cloudbuild.googleapis.com"]]
        self.triggers = {}
        pull_request = {"branch": ".*", "comment_control": "COMMENTS_ENABLED_FOR_EXTERNAL_CONTRIBUTORS_ONLY"}
        if infra.pull_request_trigger:
            self.triggers["checks"] = CloudbuildTrigger(
                self,
                "pull-request-checks",
                name=BUILD_TRIGGERS["checks"],
                location="global",
                description="tests, cdktf synth and checkov policy scan on every pull request",
                github={
                    **repository,
                    "pull_request": pull_request,
                },
                filename=BUILD_FILES["checks"],
                ignored_files=IGNORED_FILES,
                substitutions={"_ENV": names.env},
                service_account=f"projects/{names.project}/serviceAccounts/{identity.email('checks')}",
                depends_on=after,
            )
            self.triggers["plan"] = CloudbuildTrigger(
                self,
                "pull-request-plan",
                name=BUILD_TRIGGERS["plan"],
                location="global",
                description=f"cdktf diff {names.env} as the read-only planner; the plan summary is a build artifact",
                github={**repository, "pull_request": pull_request},
                filename=BUILD_FILES["plan"],
                substitutions={"_ENV": names.env, "_PLAN_BUCKET": names.bucket("dev")},
                service_account=f"projects/{names.project}/serviceAccounts/{identity.email('planner')}",
                approval_config={"approval_required": PLAN_REQUIRES_APPROVAL},
                depends_on=after,
            )
        push = {"branch": infra.deploy_branch} if infra.deploy_branch else {"tag": infra.deploy_tag}
        self.triggers["deploy"] = CloudbuildTrigger(
            self,
            "deploy",
            name=BUILD_TRIGGERS["deploy"],
            location="global",
            description=f"build, push and cdktf deploy of {names.env} on {push}",
            github={**repository, "push": push},
            filename=BUILD_FILES["deploy"],
            ignored_files=IGNORED_FILES,
            substitutions={"_ACTION": "deploy", "_ENV": names.env},
            service_account=f"projects/{names.project}/serviceAccounts/{identity.email('deployer')}",
            approval_config={"approval_required": infra.deploy_requires_approval},
            depends_on=after,
        )
