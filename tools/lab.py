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
The lab inventory reaches them as real hosts are reached: over SSH, as the
non-root user `debian` with passwordless sudo (as Debian's cloud images have it).
`up --inventory DIR` makes the lab's SSH key once (DIR/group_vars/all/secrets.ssh_key,
beside the lab's other secrets), puts its public half in each host's
authorized_keys and writes, for that lab, an ssh_config naming each host's address
and a known_hosts file with each host's own key (DIR/group_vars/all/lab.NAME.ssh_config,
lab.NAME.known_hosts): `ssh -F` that file `lab-api1` logs you in. Hosts started
without an inventory (molecule's, tests') are reached with `docker exec`.

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
    "openssh-server",
)
# The user Ansible logs in as over SSH (passwordless sudo, as on Debian's cloud images).
SSH_USER = "debian"
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
    h.update(f"{SSH_USER}{HOSTKEYS_UNIT}".encode())
    if CA_BUNDLE.exists():
        h.update(CA_BUNDLE.read_bytes())
    return h.hexdigest()[:12]


def image_tag(release: str) -> str:
    return f"{IMAGE_REPO}:{release}-{recipe_digest(release)}"


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


HOSTKEYS_UNIT = """[Unit]
Description=Make this host's own SSH host keys (the lab image carries none)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""


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
        # A non-root login with passwordless sudo; each host makes its own SSH host keys
        # at first boot (the image carries none) and allows key logins only.
        run(["chroot", str(rootfs), "useradd", "--create-home", "--shell", "/bin/bash", SSH_USER], capture=True)
        sudoers = rootfs / "etc/sudoers.d" / SSH_USER
        sudoers.write_text(f"{SSH_USER} ALL=(ALL) NOPASSWD:ALL\n")
        sudoers.chmod(0o440)
        for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
            key.unlink()
        (rootfs / "etc/ssh/sshd_config.d/lab.conf").write_text("PasswordAuthentication no\nKbdInteractiveAuthentication no\nUseDNS no\n")
        (rootfs / "etc/systemd/system/lab-ssh-hostkeys.service").write_text(HOSTKEYS_UNIT)
        (rootfs / "etc/systemd/system/multi-user.target.wants/lab-ssh-hostkeys.service").symlink_to(
            "/etc/systemd/system/lab-ssh-hostkeys.service"
        )
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
            *(["--cpu-shares", str(args.cpu_shares)] if args.cpu_shares else []),
            tag,
            "/lib/systemd/systemd",
        )
        created.append(host)
    wait_booted(containers)
    if args.inventory:
        ssh_access(Path(args.inventory), args.name, containers)
    if created:
        log(f"{len(created)} host(s) up in {time.monotonic() - started:.0f} s: {', '.join(created)}")
    else:
        log(f"all {len(hosts)} host(s) already up")


def ssh_key(inventory: Path) -> Path:
    """The lab's SSH key: made once per inventory, beside its secrets (never committed)."""
    key = inventory / "group_vars/all/secrets.ssh_key"
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"scalecorp-lab@{inventory.name}", "-f", str(key)])
        log(f"made the lab's SSH key {key}")
    return key


def ssh_paths(inventory: Path, name: str) -> tuple[Path, Path]:
    """The ssh_config and known_hosts of lab `name` (inventories/lab/group_vars/all/lab.NAME.*)."""
    base = inventory / "group_vars/all" / f"lab.{name}"
    return base.with_name(base.name + ".ssh_config"), base.with_name(base.name + ".known_hosts")


def container_address(container: str) -> str:
    fmt = "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}"
    return docker("inspect", "-f", fmt, container).stdout.strip()


def ssh_access(inventory: Path, name: str, containers: list[str]) -> None:
    """Let Ansible in as on a real host: the lab key in the login user's authorized_keys,
    and an ssh_config plus known_hosts with every host's address and its own host key."""
    key = ssh_key(inventory).resolve()
    public = key.with_name(key.name + ".pub").read_text()
    config, known = (p.resolve() for p in ssh_paths(inventory, name))
    entries, known_lines = [], []
    for container in containers:
        home = f"/home/{SSH_USER}/.ssh"
        script = (
            f"install -d -m 0700 -o {SSH_USER} -g {SSH_USER} {home}"
            f" && cat > {home}/authorized_keys && chown {SSH_USER}: {home}/authorized_keys && chmod 0600 {home}/authorized_keys"
            " && { systemctl is-active --quiet ssh || systemctl start ssh; }"
        )
        res = run(["docker", "exec", "-i", container, "sh", "-c", script], check=False, capture=True, input=public)
        if res.returncode != 0:
            sys.exit(f"{container}: could not set up SSH access: {res.stderr.strip()}")
        hostkey = docker("exec", container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
        known_lines.append(f"{container} {' '.join(hostkey)}")
        entries.append(f"Host {container}\n  HostName {container_address(container)}\n  HostKeyAlias {container}\n")
    # Hosts of this lab that were up before (a partial `up`) keep their entries.
    if known.exists():
        kept = [line for line in known.read_text().splitlines() if line.split()[0] not in containers]
        known_lines = kept + known_lines
    if config.exists():
        for block in config.read_text().split("\nHost ")[1:]:
            if block.split()[0] not in containers and block.split()[0] != "*":
                entries.insert(0, "Host " + block.strip() + "\n")
    known.write_text("\n".join(sorted(known_lines)) + "\n")
    config.write_text(
        f"# Lab '{name}', written by tools/lab.py up: ssh -F {config} <host>\n"
        + "\n".join(sorted(entries))
        + f"\nHost *\n  User {SSH_USER}\n  IdentityFile {key}\n  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n"
        # A host powered off under a live multiplexed connection: notice it within 15 s.
        "  ServerAliveInterval 5\n  ServerAliveCountMax 3\n  ConnectTimeout 10\n"
    )


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
    for path in ssh_paths(ROOT / "inventories/lab", args.name):
        path.unlink(missing_ok=True)
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


# group -> (service, port, scheme) shown by `summary` when something listens there.
# Where a URL answers depends on the firewall (docs/firewall.md): the summary tries each
# from the machine it runs on and lists apart what only the cluster's hosts reach.
SERVICES = (
    ("loadbalancer", "Airflow UI and API (nginx)", 443, "https"),
    ("airflow_api", "Airflow API server", 8080, "http"),
    ("airflow_flower", "Flower", 5555, "http"),
    ("prometheus", "Prometheus", 9090, "http"),
    ("alertmanager", "Alertmanager", 9093, "http"),
    ("grafana", "Grafana", 3000, "http"),
    ("postgresql", "PostgreSQL", 5432, "postgresql"),
    ("redis", "Redis", 6379, "redis"),
    ("redis_sentinel", "Redis Sentinel", 26379, "redis"),
)


def answers(address: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a TCP connection to address:port opens from here (a firewall drop times out)."""
    import socket

    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def cmd_summary(args: argparse.Namespace) -> None:
    """What is up and where: hosts, their groups, and the services that listen (those that
    answer from here as URLs, the others as what only the cluster's hosts reach)."""
    from concurrent.futures import ThreadPoolExecutor

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
    found = [
        (name, scheme, host, port)
        for group, name, port, scheme in SERVICES
        for host in sorted(h for h, g in groups.items() if group in g)
        if f":{port} " in listening.get(host, "")
    ]
    with ThreadPoolExecutor(max_workers=max(1, len(found))) as pool:
        reached = list(pool.map(lambda f: answers(addresses[f[2]], f[3]), found))
    print("\nServices (each answers from this machine)")
    shown = 0
    for (name, scheme, host, port), ok in zip(found, reached, strict=True):
        if ok:
            print(f"  {name:28} {scheme}://{addresses[host]}:{port}  ({host})")
            shown += 1
    if not shown:
        print("  (none answers yet)")
    inside = [(name, scheme, host, port) for (name, scheme, host, port), ok in zip(found, reached, strict=True) if not ok]
    config = ssh_paths(Path(args.inventory), args.name)[0]
    if inside:
        print("Inside the cluster only (the firewall admits the cluster's hosts): a web UI through an SSH tunnel")
        print("  to its own host, then http://localhost:<port>; the others from a lab host")
        for name, scheme, host, port in inside:
            tunnel = ""
            if scheme.startswith("http") and config.exists():
                tunnel = f"  ssh -F {config} -N -L {port}:{addresses[host]}:{port} {container_name(args.name, host)}"
            print(f"  {name:28} {host}:{port}{tunnel}")
    print("\nSecrets (passwords, keys): group_vars/all/secrets.yml of the inventory. Log in as admin with")
    print("  airflow_admin_password (Airflow), flower_password (Flower), prometheus_web_password")
    print("  (Prometheus), alertmanager_web_password (Alertmanager), grafana_admin_password (Grafana);")
    print("  Airflow's read-only user: viewer, airflow_viewer_password.")
    if config.exists():
        print(f"SSH (as Ansible does): ssh -F {config} {container_name(args.name, sorted(groups)[0])}")
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
    p.add_argument(
        "--cpu-shares",
        type=int,
        default=int(os.environ.get("SCALECORP_LAB_CPU_SHARES") or 0),
        help="the containers' CPU weight against others (docker's default 1024); the suite gives its molecule "
        "hosts less, so that they use the CPU the lab leaves idle (default: $SCALECORP_LAB_CPU_SHARES or docker's)",
    )
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
