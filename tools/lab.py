#!/usr/bin/env python3
"""The lab: Debian systemd containers that behave like small VMs.

One mechanism for everything that needs test hosts: `make lab` (the hosts of
inventories/lab), the pytest suites and the molecule scenarios (through
molecule/shared/create.yml and destroy.yml).

    lab.py engine                      start a Docker engine if none answers
    lab.py image [--release R]         build the base image once per recipe
    lab.py up   [--name N] (--inventory DIR | HOST ...)
    lab.py down [--name N]
    lab.py status [--name N]

Hosts of one lab share a Docker network `scalecorp-<name>`, carry the label
`scalecorp.lab=<name>` and answer to their inventory host name on that network.
The lab `lab` names its containers after the inventory hosts; another lab
(SCALECORP_LAB_NAME=dev, for a second cluster beside the first) prefixes them
with its name (`dev-lab-api1`), which inventories/lab maps with ansible_host.
The inventory reaches them with the community.docker.docker connection.

A lab belongs to the checkout that made it: its containers carry the label
`scalecorp.lab.owner=<id>`, the id kept in .cache/lab-<name>.owner of the checkout.
`up` reuses only its own containers; one of the same name left by another checkout
or an earlier clone (configured with secrets this checkout does not have) is
removed and made again.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE_REPO = "scalecorp-lab/debian"
LABEL = "scalecorp.lab"
OWNER_LABEL = "scalecorp.lab.owner"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEFAULT_RELEASE = "bookworm"
RELEASES = ("bookworm", "trixie")
# What debootstrap puts in the image: a bare Debian host that Ansible can manage.
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-apt",
    "sudo",
    "iproute2",
    "procps",
    "ca-certificates",
    "less",
)
# Units that make no sense in a container and only slow the boot down.
MASKED_UNITS = (
    "getty@tty1.service",
    "console-getty.service",
    "systemd-modules-load.service",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-remount-fs.service",
    "sys-kernel-debug.mount",
    "sys-kernel-tracing.mount",
    "dev-hugepages.mount",
)
# The container flags that give systemd as PID 1 what it needs (measured; see
# docs/architecture.md). --privileged fails here: the kernel refuses CAP_SYS_RESOURCE.
RUN_FLAGS = (
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--tmpfs",
    "/tmp:exec",
    "--stop-signal",
    "SIGRTMIN+3",
    # Docker's default 64 MB /dev/shm is too small for PostgreSQL's parallel workers
    # (a VACUUM of a 1 GB table fails with "could not resize shared memory segment").
    "--shm-size",
    "1g",
)


DEFAULT_NAME = os.environ.get("SCALECORP_LAB_NAME") or "lab"


def container_name(lab: str, host: str) -> str:
    """The container of an inventory host in lab `lab` (see the module's docstring)."""
    return host if lab == "lab" else f"{lab}-{host}"


def facts_cache(lab: str) -> Path:
    """Ansible's fact cache for the hosts of lab `lab` (the Makefile exports the same)."""
    return ROOT / (".cache/facts" if lab == "lab" else f".cache/facts-{lab}")


def owner_id(lab: str) -> str:
    """This checkout's id for lab `lab`: made once, kept in .cache (never committed)."""
    path = ROOT / ".cache" / f"lab-{lab}.owner"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(uuid.uuid4().hex + "\n")
    return path.read_text().strip()


def log(msg: str) -> None:
    print(f"[lab] {msg}", flush=True)


def run(cmd: list[str], check: bool = True, capture: bool = False, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=check, text=True, capture_output=capture, **kw)


def docker(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return run(["docker", *args], check=check, capture=capture)


# --------------------------------------------------------------------------- engine
def engine_up() -> bool:
    return shutil.which("docker") is not None and docker("info", check=False).returncode == 0


def cmd_engine(_args: argparse.Namespace) -> None:
    if engine_up():
        return
    if not shutil.which("dockerd") or not shutil.which("debootstrap"):
        log("installing docker.io and debootstrap from Debian")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "update", "-qq"], env=env)
        run(["apt-get", "install", "-y", "-qq", "docker.io", "debootstrap"], env=env, capture=True)
    if engine_up():
        return
    log("starting dockerd (no systemd on this machine: started directly)")
    logf = open("/var/log/dockerd.log", "ab")  # noqa: SIM115 - handed to the daemon
    subprocess.Popen(["dockerd"], stdout=logf, stderr=logf, start_new_session=True)
    for _ in range(60):
        if engine_up():
            log("docker engine is up")
            return
        time.sleep(1)
    sys.exit("dockerd did not answer within 60 s; see /var/log/dockerd.log")


# --------------------------------------------------------------------------- image
def apt_mirror() -> str:
    """The Debian mirror the controller's own apt sources use."""
    candidates = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in candidates:
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return "http://deb.debian.org/debian"


def recipe_digest(release: str) -> str:
    h = hashlib.sha256()
    h.update(release.encode())
    h.update(" ".join(PACKAGES).encode())
    h.update(" ".join(MASKED_UNITS).encode())
    h.update(inspect.getsource(build_image).encode())
    if CA_BUNDLE.exists():
        h.update(CA_BUNDLE.read_bytes())
    return h.hexdigest()[:12]


def image_tag(release: str) -> str:
    return f"{IMAGE_REPO}:{release}-{recipe_digest(release)}"


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def build_image(release: str) -> str:
    tag = image_tag(release)
    if image_exists(tag):
        return tag
    mirror = apt_mirror()
    log(f"building {tag} with debootstrap from {mirror} (once per recipe)")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lab-rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                release,
                str(rootfs),
                mirror,
            ],
            capture=True,
        )
        # Hosts of the lab trust the same CA bundle as the controller (pip needs it).
        if CA_BUNDLE.exists():
            shutil.copy(CA_BUNDLE, rootfs / "usr/local/share/ca-certificates/controller-bundle.crt")
            (rootfs / "etc/pip.conf").write_text("[global]\ncert = /usr/local/share/ca-certificates/controller-bundle.crt\n")
        (rootfs / "etc/apt/sources.list").write_text(f"deb {mirror} {release} main\n")
        (rootfs / "etc/machine-id").write_text("")
        for unit in MASKED_UNITS:
            link = rootfs / "etc/systemd/system" / unit
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
        # Package lists are part of the image, as on any installed host.
        run(["chroot", str(rootfs), "apt-get", "update", "-qq"], capture=True)
        run(["chroot", str(rootfs), "apt-get", "clean"], capture=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(
            ["docker", "import", "-c", 'CMD ["/lib/systemd/systemd"]', "-", tag],
            stdin=tar.stdout,
            capture=True,
        )
        tar.wait()
    log(f"built {tag} in {time.monotonic() - started:.0f} s")
    return tag


def cmd_image(args: argparse.Namespace) -> None:
    cmd_engine(args)
    print(build_image(args.release))


# --------------------------------------------------------------------------- hosts
def read_inventory(inventory: str) -> dict[str, dict]:
    """Every host of an inventory: {"vars": its variables, "groups": the groups it is in}."""
    ansible_inventory = shutil.which("ansible-inventory") or str(Path(sys.executable).parent / "ansible-inventory")
    data = json.loads(run([ansible_inventory, "-i", inventory, "--list"], capture=True, cwd=ROOT).stdout)
    hostvars = data.get("_meta", {}).get("hostvars", {})

    def walk(group: str) -> list[str]:
        body = data.get(group, {})
        hosts = list(body.get("hosts", []))
        for child in body.get("children", []):
            hosts += walk(child)
        return hosts

    hosts: dict[str, dict] = {}
    for group in data:
        if group == "_meta":
            continue
        for host in walk(group):
            entry = hosts.setdefault(host, {"vars": hostvars.get(host, {}), "groups": []})
            if group not in ("all", "ungrouped") and group not in entry["groups"]:
                entry["groups"].append(group)
    return dict(sorted(hosts.items()))


def lab_containers(name: str) -> list[str]:
    out = docker("ps", "-a", "--filter", f"label={LABEL}={name}", "--format", "{{.Names}}").stdout
    return sorted(line for line in out.splitlines() if line)


def wait_booted(hosts: list[str], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    pending = set(hosts)
    while pending and time.monotonic() < deadline:
        for host in sorted(pending):
            res = docker("exec", host, "systemctl", "is-system-running", check=False)
            if res.stdout.strip() in ("running", "degraded"):
                pending.discard(host)
        if pending:
            time.sleep(0.5)
    if pending:
        sys.exit(f"hosts did not finish booting within {timeout:.0f} s: {', '.join(sorted(pending))}")


def cmd_up(args: argparse.Namespace) -> None:
    cmd_engine(args)
    hosts: dict[str, dict] = {}
    for spec in args.hosts:  # NAME or NAME:RELEASE
        name, _, release = spec.partition(":")
        hosts[name] = {"lab_release": release} if release else {}
    if args.inventory:
        hosts.update({host: entry["vars"] for host, entry in read_inventory(args.inventory).items()})
    if not hosts:
        sys.exit("nothing to start: give --inventory or host names")
    network = f"scalecorp-{args.name}"
    if docker("network", "inspect", network, check=False).returncode != 0:
        docker("network", "create", "--label", f"{LABEL}={args.name}", network)
    started = time.monotonic()
    owner = owner_id(args.name)
    created = []
    containers = []
    for alias, hvars in hosts.items():
        release = hvars.get("lab_release", args.release)
        if release not in RELEASES:
            sys.exit(f"{alias}: lab_release must be one of {', '.join(RELEASES)}, not {release!r}")
        tag = build_image(release)
        host = alias if args.exact_names else container_name(args.name, alias)
        containers.append(host)
        fmt = f'{{{{.State.Running}}}} {{{{.Config.Image}}}} {{{{index .Config.Labels "{OWNER_LABEL}"}}}}'
        state = docker("inspect", "-f", fmt, host, check=False)
        if state.returncode == 0:
            running, image, made_by = (state.stdout.split() + [""])[:3]
            if made_by != owner:
                log(f"{host}: left by another checkout (its secrets are not ours), recreating")
                docker("rm", "-f", "-v", host)
            elif image != tag:
                log(f"{host}: image recipe changed, recreating")
                docker("rm", "-f", host)
            elif running == "true":
                continue
            else:
                docker("start", host)
                created.append(host)
                continue
        docker(
            "run",
            "-d",
            "--name",
            host,
            "--hostname",
            alias,
            "--network",
            network,
            "--network-alias",
            alias,
            "--label",
            f"{LABEL}={args.name}",
            "--label",
            f"{OWNER_LABEL}={owner}",
            *RUN_FLAGS,
            tag,
            "/lib/systemd/systemd",
        )
        created.append(host)
    wait_booted(containers)
    if created:
        log(f"{len(created)} host(s) up in {time.monotonic() - started:.0f} s: {', '.join(created)}")
    else:
        log(f"all {len(hosts)} host(s) already up")


def cmd_down(args: argparse.Namespace) -> None:
    if not engine_up():
        return
    names = lab_containers(args.name)
    if names:
        docker("rm", "-f", "-v", *names)
        log(f"removed {len(names)} host(s): {', '.join(names)}")
    # Cached facts of removed hosts would give their successors old addresses.
    prefix = "" if args.name == "lab" else f"{args.name}-"
    for name in names:
        host = name.removeprefix(prefix)
        for cached in {*facts_cache(args.name).glob(f"*{host}"), *facts_cache("lab").glob(f"*{name}")}:
            if cached.name in (host, name) or cached.name.endswith((f"_{host}", f"_{name}")):
                cached.unlink()
    network = f"scalecorp-{args.name}"
    if docker("network", "inspect", network, check=False).returncode == 0:
        docker("network", "rm", network)


def cmd_status(args: argparse.Namespace) -> None:
    if not engine_up():
        print("docker engine: not running")
        return
    for host in lab_containers(args.name):
        fmt = "{{.State.Status}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        state, _, addr = docker("inspect", "-f", fmt, host).stdout.strip().partition(" ")
        print(f"{host:20} {state:10} {addr}")


# group -> (service, port, scheme, open to the controller) shown by `summary` when
# something listens there. With the lab's firewall (inventories/lab/group_vars/all/lab.yml)
# the API servers and PostgreSQL answer only the cluster's own hosts.
SERVICES = (
    ("loadbalancer", "Airflow UI and API (nginx)", 443, "https", True),
    ("airflow_api", "Airflow API server", 8080, "http", False),
    ("airflow_flower", "Flower", 5555, "http", True),
    ("prometheus", "Prometheus", 9090, "http", True),
    ("alertmanager", "Alertmanager", 9093, "http", True),
    ("grafana", "Grafana", 3000, "http", True),
    ("postgresql", "PostgreSQL", 5432, "postgresql", False),
    ("redis", "Redis", 6379, "redis", True),
    ("redis_sentinel", "Redis Sentinel", 26379, "redis", True),
)


def cmd_summary(args: argparse.Namespace) -> None:
    """What is up and where: hosts, their groups, and the services that listen."""
    groups = {host: entry["groups"] for host, entry in read_inventory(args.inventory).items()}
    print(f"\nLab '{args.name}': {len(groups)} hosts")
    print(f"{'host':12} {'state':8} {'address':15} groups")
    listening: dict[str, str] = {}
    addresses: dict[str, str] = {}
    for host in sorted(groups):
        fmt = "{{.State.Status}} {{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
        container = container_name(args.name, host)
        res = docker("inspect", "-f", fmt, container, check=False)
        state, _, addr = res.stdout.strip().partition(" ") if res.returncode == 0 else ("missing", "", "")
        addresses[host] = addr
        if state == "running":
            listening[host] = docker("exec", container, "ss", "-Hltn", check=False).stdout
        print(f"{host:12} {state:8} {addr:15} {', '.join(sorted(groups[host]))}")
    print("\nServices")
    shown = 0
    for group, name, port, scheme, open_here in SERVICES:
        for host in sorted(h for h, g in groups.items() if group in g):
            if f":{port} " in listening.get(host, ""):
                where = "" if open_here else ", from the cluster's hosts only"
                print(f"  {name:28} {scheme}://{addresses[host]}:{port}  ({host}{where})")
                shown += 1
    if not shown:
        print("  (no service listens yet)")
    print("\nSecrets (passwords, keys): group_vars/all/secrets.yml of the inventory. Log in as admin with")
    print("  airflow_admin_password (Airflow), flower_password (Flower), prometheus_web_password")
    print("  (Prometheus), alertmanager_web_password (Alertmanager), grafana_admin_password (Grafana);")
    print("  Airflow's read-only user: viewer, airflow_viewer_password.")
    print("TLS: nginx's and PostgreSQL's certificates are signed by the cluster CA,")
    print("  group_vars/all/secrets.ca.crt of the inventory (curl --cacert it, or trust it in a browser).")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("engine").set_defaults(func=cmd_engine)
    p = sub.add_parser("image")
    p.add_argument("--release", default=DEFAULT_RELEASE, choices=RELEASES)
    p.set_defaults(func=cmd_image)
    p = sub.add_parser("up")
    p.add_argument("--name", default=DEFAULT_NAME)
    p.add_argument("--inventory")
    p.add_argument("--release", default=DEFAULT_RELEASE, choices=RELEASES)
    p.add_argument("--exact-names", action="store_true", help="name containers exactly as the hosts (molecule)")
    p.add_argument("hosts", nargs="*", metavar="HOST[:RELEASE]")
    p.set_defaults(func=cmd_up)
    p = sub.add_parser("summary")
    p.add_argument("--name", default=DEFAULT_NAME)
    p.add_argument("--inventory", default="inventories/lab")
    p.set_defaults(func=cmd_summary)
    for verb, func in (("down", cmd_down), ("status", cmd_status)):
        p = sub.add_parser(verb)
        p.add_argument("--name", default=DEFAULT_NAME)
        p.set_defaults(func=func)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
