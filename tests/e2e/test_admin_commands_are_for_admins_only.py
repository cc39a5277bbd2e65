"""``presence-b2b ctl`` run by a user the service admits as a client, but not as an admin."""

from __future__ import annotations

import concurrent.futures.thread  # noqa: F401 (imported before the child drops root)
import os
import sys
import traceback
from pathlib import Path

import pytest
from presence_b2b.cli import watch  # noqa: F401 (imported before the child drops root)
from presence_b2b.cli.main import main
from presence_b2b.ipc import client  # noqa: F401 (imported before the child drops root)

pytestmark = pytest.mark.integration

NOBODY = 65534


def ctl_as_nobody(socket: str, *args: str) -> tuple[int, str, str]:
    """``presence-b2b ctl ARGS`` as uid and gid nobody: exit status, stdout, stderr.

    Run in a forked child that drops root and calls the command line in-process:
    an exec would need the interpreter (and every module imported late) to be
    readable by nobody.
    """
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 70
        try:
            sys.stdout = os.fdopen(out_w, "w")
            sys.stderr = os.fdopen(err_w, "w")
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = main(["ctl", "--control-socket", socket, *args])
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r) as out, os.fdopen(err_r) as err:
        stdout, stderr = out.read(), err.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stdout, stderr


def let_everyone_reach(socket: str) -> None:
    """Open the path for nobody, so that the service's credential check decides."""
    for directory in (Path(socket).parent, Path(socket).parent.parent):
        os.chmod(directory, 0o755)
    os.chmod(socket, 0o666)


def test_an_admitted_client_is_refused_admin_commands_with_the_reason(service) -> None:
    svc = service(shards=1, config={"server": {"allowed_uids": [NOBODY]}})
    let_everyone_reach(svc.control_socket)
    code, _, stderr = ctl_as_nobody(svc.control_socket, "list")
    assert code == 2, stderr
    assert (
        f"uid {NOBODY} may not run admin commands: only root, the service user"
        " and members of server.admin_gids may"
    ) in stderr
    assert svc.ctl("list").returncode == 0  # root still may


def test_a_member_of_admin_gids_runs_admin_commands(service) -> None:
    svc = service(shards=1, config={"server": {"admin_gids": [NOBODY]}})
    let_everyone_reach(svc.control_socket)
    code, stdout, stderr = ctl_as_nobody(svc.control_socket, "--json", "stats")
    assert code == 0, stderr
    assert '"clients": 0' in stdout
