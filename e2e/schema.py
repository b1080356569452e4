"""Schemathesis (pinned in e2e/requirements.txt) against the OpenAPI
document a real `elide serve` publishes at /api/schema/, with a valid
personal API key: no 5xx, and every answer conforms to the document
(status, content type, headers, body schema).

Every request names the server's project (`project_id`), so that generated
requests reach the handlers rather than stop at 404. Left out: deleting the
project and revoking keys (either would end the run early: everything after
answers 401/404); the persons analytics routes (funnel, lifecycle,
stickiness, correlation, and trends, which answers 501; tests cover
them); the `/api/environments/` copies, which are the same handlers
under another prefix (tests cover them).

Run by e2e/run: python e2e/schema.py path/to/elide
"""

import os
import subprocess
import sys
import time

import requests

from server import Server


def main(elide):
    bin_dir = os.path.dirname(sys.executable)
    with Server(elide, "--demo") as srv:
        # Some data for the generated requests to meet.
        r = requests.post(f"{srv.base}/batch/", json={"api_key": srv.token, "batch": [
            {"event": "$identify", "distinct_id": f"s{i}", "properties": {"$set": {"email": f"s{i}@example.com"}}}
            for i in range(20)
        ]}, timeout=30)
        assert r.status_code == 200, r.text
        config = os.path.join(srv.dir.name, "schemathesis.toml")
        with open(config, "w") as f:
            f.write(f'[parameters]\n"path.project_id" = "{srv.project}"\n')
        cmd = [
            os.path.join(bin_dir, "schemathesis"), "--config-file", config,
            "run", f"{srv.base}/api/schema/",
            "--header", f"Authorization: Bearer {srv.key}",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                        "response_headers_conformance,response_schema_conformance",
            # One filter: schemathesis combines filters of different kinds.
            "--exclude-operation-id-regex",
            "^(environments_.*|projects_destroy|personal_api_keys_destroy"
            "|persons_(funnel|trends|lifecycle|stickiness).*)$",
            "--max-examples", os.environ.get("E2E_MAX_EXAMPLES", "25"),
            "--seed", os.environ.get("E2E_SEED", "1"),
            "--workers", "2",
            "--request-timeout", "60",
            "--suppress-health-check", "all",
            "--no-color",
        ]
        print("e2e schema:", " ".join(c if "Bearer" not in c else "Authorization: Bearer …" for c in cmd), flush=True)
        # Its caches and reports go to the throwaway directory.
        code = subprocess.call(cmd, cwd=srv.dir.name)
        if code != 0:
            print(srv.logs(), file=sys.stderr)
            sys.exit(f"e2e schema: schemathesis failed ({code})")
    print("e2e schema: no 5xx, every answer conforms to /api/schema/")


if __name__ == "__main__":
    t = time.time()
    main(sys.argv[1])
    print(f"e2e schema: {time.time() - t:.1f} s")
