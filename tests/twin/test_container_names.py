"""Every container the twin starts gets a name no other run can hold: a job id restarts at 1 with each fake, and two
runs of the same job within one second (one test after another, or two test sessions side by side) collided on
`twin-1-<seconds>` ("that name is already in use", the job failed with podman's exit 125)."""

from __future__ import annotations

from twin import jobs

JOB = {
    "jobSpec": {
        "workerPoolSpecs": [{"containerSpec": {"imageUri": "eu-docker.pkg.dev/p/r/fmnist-trainer:t", "args": ["x"]}}]
    }
}


def name_of(command: list[str]) -> str:
    return command[command.index("--name") + 1]


def test_the_same_job_run_twice_at_once_gets_two_container_names():
    names = {
        name_of(jobs.podman_command("projects/p/locations/l/customJobs/1", JOB, {}, "localhost/fmnist-trainer:t"))
        for _ in range(50)
    }
    assert len(names) == 50
    assert all(name.startswith("twin-1-") for name in names)  # still readable: the job's id first
