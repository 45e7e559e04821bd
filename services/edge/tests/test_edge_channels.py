"""Peer addresses as gRPC target URIs, and channels that spread calls over every address."""

from __future__ import annotations

import json
from typing import Any

import pytest

from avatarchat.config import ConfigError
from avatarchat.v1 import avatar_pb2, avatar_pb2_grpc
from avatarchat_edge.channels import Deadlines, channel_options, check_target, open_channel
from avatarchat_edge.config import EdgeConfig

DEADLINES = Deadlines(rpc_s=5, llm_reply_s=120, stt_stream_s=1800)


@pytest.mark.parametrize(
    "target",
    [
        "llm:50052",
        "127.0.0.1:50052",
        "dns:///llm:50052",
        "dns://10.0.0.10/llm.avatarchat.svc.cluster.local:50052",
        "dns:llm:50052",
        "ipv4:10.0.0.1:50053,10.0.0.2:50053",
        "ipv6:[::1]:50053,[fe80::1]:50053",
        "unix:/run/avatarchat/llm.sock",
    ],
)
def test_target_uris_are_accepted(target: str) -> None:
    assert check_target("AVATARCHAT_LLM_ADDR", target) == target


@pytest.mark.parametrize(
    ("target", "hint"),
    [
        ("llm", "host:port"),
        ("dns:///llm", "host:port"),
        ("dns:///llm:0", "host:port"),
        ("ipv4:10.0.0.1", "not an ipv4 address:port"),
        ("ipv4:10.0.0.1:50053,llm:50053", "'llm:50053'"),
        ("ipv4:[::1]:50053", "not an ipv4"),
        ("ipv6:10.0.0.1:50053", "not an ipv6"),
        ("unix:", "socket path"),
    ],
)
def test_bad_targets_name_the_variable_and_say_what_is_wrong(target: str, hint: str) -> None:
    with pytest.raises(ConfigError, match="AVATARCHAT_AVATAR_ADDR") as caught:
        check_target("AVATARCHAT_AVATAR_ADDR", target)
    assert hint in str(caught.value)


def test_the_edge_config_takes_target_uris() -> None:
    config = EdgeConfig.from_env(
        {
            "AVATARCHAT_AVATAR_ADDR": "ipv4:127.0.0.1:1,127.0.0.1:2",
            "AVATARCHAT_LLM_ADDR": " dns:///llm:50052 ",
        }
    )
    assert config.avatar_addr == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert config.llm_addr == "dns:///llm:50052"
    with pytest.raises(ConfigError, match="AVATARCHAT_STT_ADDR"):
        EdgeConfig.from_env({"AVATARCHAT_STT_ADDR": "ipv4:stt:50051"})


def test_only_idempotent_methods_are_retried() -> None:
    options = dict(channel_options("avatar", DEADLINES))
    config = json.loads(options["grpc.service_config"])
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    retried = {
        name["method"]
        for method in config["methodConfig"]
        if "retryPolicy" in method
        for name in method["name"]
    }
    assert retried == {"GetClip", "CancelClips", "Check"}  # never GenerateClip: no twin clips
    llm = json.loads(dict(channel_options("llm", DEADLINES))["grpc.service_config"])
    reply = next(m for m in llm["methodConfig"] if m["name"][0]["method"] == "Reply")
    assert reply["timeout"] == "120.000s" and "retryPolicy" not in reply


async def test_calls_are_spread_over_every_address_of_a_target(make_avatar: Any) -> None:
    first, second = await make_avatar(), await make_avatar()
    target = f"ipv4:{first.addr},{second.addr}"
    channel = open_channel("avatar", target, DEADLINES)
    try:
        stub = avatar_pb2_grpc.AvatarServiceStub(channel)
        for _ in range(10):
            await stub.CancelClips(
                avatar_pb2.CancelClipsRequest(session_id="s1"), timeout=5, wait_for_ready=True
            )
    finally:
        await channel.close()
    counts = [len(first.servicer.cancels), len(second.servicer.cancels)]
    assert sum(counts) == 10 and min(counts) >= 4, counts  # round robin, not pick_first
