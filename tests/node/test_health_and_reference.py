"""On a live network: /v1/health follows commits (503 once the node cannot
commit), a block is found by its hash, and /v1/openapi.json is served."""

from __future__ import annotations

import importlib.util

from tests.api.test_openapi import Checker
from tests.node.harness import LocalNetwork


def test_health_turns_503_when_the_node_stops_committing(network: LocalNetwork) -> None:
    network.start_all()
    network.wait_height(list(range(4)), 2)
    client, url = network.client, network.url(0)

    health = client.get(url + "/v1/health")
    assert health.status_code == 200, health.text
    body = health.json()
    assert body["status"] == "ok" and body["stall_bound_s"] == 3.0  # 3 x the 1 s view timeout

    by_height = client.get(url + "/v1/blocks/2").json()
    by_hash = client.get(url + f"/v1/blocks/by-hash/{by_height['hash']}")
    assert by_hash.status_code == 200 and by_hash.json() == by_height

    reference = client.get(url + "/v1/openapi.json")
    assert reference.status_code == 200 and reference.json()["openapi"].startswith("3.1")
    if importlib.util.find_spec("jsonschema") is not None:  # a dev dependency
        check = Checker()  # a real node's answers conform to the document
        for template, path in [
            ("/v1/status", "/v1/status"),
            ("/v1/health", "/v1/health"),
            ("/v1/validators", "/v1/validators"),
            ("/v1/markets", "/v1/markets"),
            ("/v1/evidence", "/v1/evidence"),
            ("/v1/blocks/{height}", "/v1/blocks/1"),
            ("/v1/blocks/{height}/namespaces/{namespace}", "/v1/blocks/2/namespaces/7"),
        ]:
            check("get", template, client.get(url + path))
        assert len(check.checked) == 7

    for i in (1, 2, 3):  # no quorum left: node 0 cannot commit
        network.stop(i)

    def stalled() -> bool:
        answer = client.get(url + "/v1/health")
        return answer.status_code == 503 and answer.json()["code"] == "stalled"

    network.wait_for("node 0's health to read stalled", stalled, timeout=30.0)
