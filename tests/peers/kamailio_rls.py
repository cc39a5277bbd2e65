"""Kamailio 5.6 as a resource list server (RFC 4662): `rls` with `pua`, beside the
presence server of `tests.peers.kamailio`, on one UDP port.

The list lives in Kamailio's own XCAP table (`integrated_xcap_server`): an
rls-services document (doc_type 8) under the watcher's account names the list
URI and its entries. rls subscribes to each entry through `pua`, to itself (its
`outbound_proxy`), and its presence module answers; a SUBSCRIBE for a URI that
is not a list comes back from `rls_handle_subscribe()` with `to_presence_code`
and goes to `handle_subscribe()`.
"""

from __future__ import annotations

import subprocess

from tests.peers.kamailio import SCHEMA_DIR, KamailioPresenceServer

RLS_MODULES = """loadmodule "pua.so"
loadmodule "rls.so"
modparam("pua", "db_url", "{db_url}")
modparam("rls", "db_url", "{db_url}")
modparam("rls", "server_address", "sip:rls@{host}:{port}")
modparam("rls", "outbound_proxy", "sip:{host}:{port}")
modparam("rls", "integrated_xcap_server", 1)
modparam("rls", "to_presence_code", 10)
modparam("rls", "waitn_time", 1)
"""

NOTIFY_ROUTE = """    if (is_method("NOTIFY")) {
        if (rls_handle_notify() > 0) {
            exit;
        }
        sl_send_reply("481", "Subscription Does Not Exist");
        exit;
    }
"""

#: XCAP document type of rls-services (Kamailio's xcap_client: 1 << 3).
RLS_SERVICES = 8


class KamailioRlsServer(KamailioPresenceServer):
    """Presence plus a list `sip:{list_user}@host` of `members`, for `watcher`."""

    def __init__(
        self, *, list_user: str, members: tuple[str, ...], watcher: str, debug: int = 2
    ) -> None:
        super().__init__(debug=debug)
        self.list_user = list_user
        self.members = members
        self.watcher = watcher

    @property
    def list_uri(self) -> str:
        return f"sip:{self.list_user}@{self.host}"

    def _prepare(self) -> None:
        super()._prepare()
        cfg = self.cfg_path.read_text()
        cfg = cfg.replace(
            'loadmodule "presence_xml.so"\n',
            'loadmodule "presence_xml.so"\n'
            + RLS_MODULES.format(db_url=self.db_url, host=self.host, port=self.port),
        )
        presence_route = '    if (is_method("PUBLISH|SUBSCRIBE")) {'
        cfg = cfg.replace(presence_route, NOTIFY_ROUTE + presence_route)
        cfg = cfg.replace(
            "            handle_subscribe();\n",
            "            $var(list) = rls_handle_subscribe();\n"
            "            if ($var(list) == 10) {\n"
            "                handle_subscribe();\n"
            "            }\n",
        )
        self.cfg_path.write_text(cfg)
        entries = "".join(f'<rl:entry uri="sip:{m}@{self.host}"/>' for m in self.members)
        doc = (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<rls-services xmlns="urn:ietf:params:xml:ns:rls-services"'
            ' xmlns:rl="urn:ietf:params:xml:ns:resource-lists">'
            f'<service uri="{self.list_uri}"><list name="{self.list_user}">{entries}</list>'
            "<packages><package>presence</package></packages></service></rls-services>"
        )
        sql = (SCHEMA_DIR / "rls-create.sql").read_text()
        sql += (
            "INSERT INTO xcap (username, domain, doc, doc_type, etag, source, doc_uri, port)"
            f" VALUES ('{self.watcher}', '{self.host}', '{doc}', {RLS_SERVICES}, 'e1', 1,"
            " 'rls-services/index', 0);\n"
        )
        subprocess.run(
            ["sqlite3", str(self.db_path)], input=sql.encode(), check=True, capture_output=True
        )
