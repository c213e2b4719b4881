#!/usr/bin/env python3
"""A CRI client on Python grpcio with default channel options, for the end-to-end tests
(integration/tests/grpc_interop.rs).

    cri_client.py GENERATED_DIR SOCKET LOG_DIR

GENERATED_DIR holds api_pb2.py and api_pb2_grpc.py (grpc_tools.protoc of proto/api.proto).
On unix://SOCKET it calls Version, then runs a pod (RunPodSandbox, PodSandboxStatus), stops
it (StopPodSandbox, PodSandboxStatus) and removes it (RemovePodSandbox, ListPodSandbox),
printing one JSON object a line per call. grpcio sends the socket's path, %-encoded and
without its leading slash, as :authority. An RPC error ends it with status 1.
"""

import json
import sys
import uuid


def main():
    gen_dir, socket, log_dir = sys.argv[1:4]
    sys.path.insert(0, gen_dir)
    import grpc
    import api_pb2 as api
    import api_pb2_grpc

    def out(call, **fields):
        print(json.dumps({"call": call, **fields}), flush=True)

    with grpc.insecure_channel("unix://" + socket) as channel:
        rt = api_pb2_grpc.RuntimeServiceStub(channel)
        try:
            v = rt.Version(api.VersionRequest(), timeout=30)
            out(
                "Version",
                grpcio=grpc.__version__,
                runtime_name=v.runtime_name,
                runtime_version=v.runtime_version,
                runtime_api_version=v.runtime_api_version,
            )
            config = api.PodSandboxConfig(
                metadata=api.PodSandboxMetadata(
                    name="grpcio", uid=uuid.uuid4().hex, namespace="itest"
                ),
                hostname="grpcio-host",
                log_directory=log_dir,
                labels={"suite": "peapod-it"},
                linux=api.LinuxPodSandboxConfig(),
            )
            pod = rt.RunPodSandbox(
                api.RunPodSandboxRequest(config=config), timeout=60
            ).pod_sandbox_id
            out("RunPodSandbox", pod_sandbox_id=pod)

            def state(call):
                s = rt.PodSandboxStatus(
                    api.PodSandboxStatusRequest(pod_sandbox_id=pod), timeout=30
                ).status
                out(call, id=s.id, state=api.PodSandboxState.Name(s.state))

            state("PodSandboxStatus")
            rt.StopPodSandbox(api.StopPodSandboxRequest(pod_sandbox_id=pod), timeout=60)
            out("StopPodSandbox")
            state("PodSandboxStatus")
            rt.RemovePodSandbox(
                api.RemovePodSandboxRequest(pod_sandbox_id=pod), timeout=60
            )
            out("RemovePodSandbox")
            items = rt.ListPodSandbox(api.ListPodSandboxRequest(), timeout=30).items
            out("ListPodSandbox", ids=[p.id for p in items])
        except grpc.RpcError as e:
            print(f"RPC failed: {e.code()}: {e.details()}", file=sys.stderr)
            sys.exit(1)


if __name__ == "__main__":
    main()
