#!/usr/bin/env python3
"""The docs run as written: every command block of README.md, deploy/README.md and docs/*.md
is either run here or visibly marked illustrative.

A command block is a fenced block labelled sh, bash, shell, zsh or console, or an unlabelled
one whose lines are commands. It is illustrative when its first line is a comment
`# illustrative: <why>` (inside the block, so a reader sees it too); the checker only checks
that the reason is there. Every other block runs, in order, file by file, in one bash per
file (`set -eo pipefail`: a failing command fails the block), with:
  - a temporary copy of the repository (the tracked and untracked files, not target/ or
    .git/), made a git checkout with one commit, as a clone is; the current directory;
  - a temporary HOME and TMPDIR, nothing of the caller's;
  - the real `app` (APP_BIN, default target/debug/app) on PATH and as APP_BIN;
  - scripts/stubs' docker, kind and kubectl (kubectl kustomize is the real one);
  - a terminal (a pty): `app seal set`'s hidden prompts get a value per key (the same one for
    DATABASE_PASSWORD and POSTGRES_PASSWORD, as the docs ask), a `[y/N]` question gets `y`;
  - EDITOR set to a script that does what the docs ask of an editor: it replaces the
    placeholders of deploy/overlays/prod/params.env;
  - for every file but deploy/README.md (whose first deployment does it), params.env filled
    in and committed, as that first deployment leaves it;
  - the placeholders of the docs replaced: age1cluster..., age1newcluster... and
    age1postgres... by the recipients of identities made for the run, age1recovery... by the recovery key's, read
    from ~/.config/discbaboons/recovery.key as the docs make it.
CHECK_DOCS_VERBOSE=1 prints each file's run. The binary's --help texts (every subcommand's) may name repository paths only if they exist.
Exits 1 naming the file and line of each block that failed or lacks a marker's reason.
"""
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMAND_LANGS = {"sh", "bash", "shell", "zsh", "console"}
# An unlabelled block is commands when a line starts with one of these.
COMMAND_START = re.compile(r"^\s*(\$ )?(app|kubectl|docker|kind|cargo|git|curl|openssl|age|yq|printf|"
                           r"deploy/\S+\.sh|\./scripts/|scripts/)(\s|$)")
ILLUSTRATIVE = re.compile(r"^\s*#\s*illustrative:\s*(.*)$")
FILE_TIMEOUT = 180
# Sections another branch is rewriting while this checker lands: skipped by name, and said so
# in the summary, until their blocks are marked or made to run.
# A heading of None: the whole file.
PENDING = {
}
PROMPT = re.compile(rb"(value of|again,) ([A-Z0-9_]+): $")
QUESTION = re.compile(rb"\[y/N\] $")


def doc_files():
    files = ["README.md", "deploy/README.md"]
    files += sorted(os.path.join("docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md"))
    return files


def blocks(path):
    """(line, heading, lang, lines) of each fenced block."""
    out, fence, start, lang, body, heading = [], None, 0, "", [], ""
    for number, line in enumerate(open(os.path.join(ROOT, path), encoding="utf-8"), 1):
        stripped = line.rstrip("\n")
        if fence is None:
            m = re.match(r"^(\s*)(```+)(.*)$", stripped)
            if m:
                fence, start, lang, body = m.group(2), number, m.group(3).strip().split(" ")[0], []
            elif stripped.startswith("#"):
                heading = stripped.lstrip("#").strip()
        elif stripped.strip() == fence:
            out.append((start, heading, lang, body))
            fence = None
        else:
            body.append(stripped)
    return out


def is_command_block(lang, body):
    if lang:
        return lang in COMMAND_LANGS
    return any(COMMAND_START.match(line) for line in body)


def substitute(text):
    text = text.replace("age1newcluster...", '"$DOCS_NEW_CLUSTER_RECIPIENT"')
    text = text.replace("age1cluster...", '"$DOCS_CLUSTER_RECIPIENT"')
    text = text.replace("age1postgres...", '"$DOCS_POSTGRES_RECIPIENT"')
    return text.replace("age1recovery...", '"$(sed -n "s/^# public key: //p" ~/.config/discbaboons/recovery.key)"')


def copy_repo(dest):
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = os.path.join(ROOT, rel)
        if os.path.isfile(src):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(src, os.path.join(dest, rel))
    git = ["git", "-C", dest, "-c", "user.name=check-docs", "-c", "user.email=check-docs@localhost"]
    subprocess.run(git[:3] + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "-A"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "the repository as checked"], check=True)


def run_file(path, runnable, env, cwd):
    """Runs the file's blocks in one bash on a pty; returns (ok, transcript)."""
    script = ["set -eo pipefail", "trap 'echo \"check-docs: FAILED: block at line $DOCS_LINE\"' ERR"]
    for line, body in runnable:
        script += [f"DOCS_LINE={line}", f"echo 'check-docs: block at line {line}'", substitute("\n".join(body))]
    script += ["echo 'check-docs: all blocks ran'"]
    script_path = os.path.join(env["TMPDIR"], "blocks.sh")
    with open(script_path, "w") as f:
        f.write("\n".join(script) + "\n")
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(cwd)
        os.execvpe("bash", ["bash", "--noprofile", "--norc", script_path], env)
    transcript, pending, deadline = b"", b"", time.time() + FILE_TIMEOUT
    while time.time() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        transcript += chunk
        pending += chunk
        m = PROMPT.search(pending)
        if m:
            key = m.group(2).decode()
            key = "DATABASE_PASSWORD" if key == "POSTGRES_PASSWORD" else key
            os.write(fd, f"docs-check-{key.lower()}-0123456789abcdef0123456789abcdef\n".encode())
            pending = b""
        elif QUESTION.search(pending):
            os.write(fd, b"y\n")
            pending = b""
    else:
        os.kill(pid, signal.SIGKILL)
        transcript += f"\ncheck-docs: timed out after {FILE_TIMEOUT}s\n".encode()
    _, status = os.waitpid(pid, 0)
    text = transcript.decode(errors="replace").replace("\r\n", "\n")
    return os.waitstatus_to_exitcode(status) == 0 and "check-docs: all blocks ran" in text, text


def help_paths(app):
    """Problems with the repository files the binary's --help examples name: each must exist
    (a name with an extension; `deploy/app` is kubectl's, not a path)."""
    def commands(args):
        out = subprocess.run([app, *args, "--help"], capture_output=True, text=True, check=True).stdout
        listed = out.split("Commands:", 1)[1].split("\n\n", 1)[0] if "Commands:" in out else ""
        return out, [m.group(1) for m in re.finditer(r"^  ([a-z][a-z-]*) ", listed, re.M) if m.group(1) != "help"]
    problems, todo = [], [[]]
    while todo:
        args = todo.pop()
        out, subs = commands(args)
        todo += [args + [sub] for sub in subs]
        for path in sorted(set(re.findall(r"\b((?:deploy|docs|scripts|migrations)/[\w./-]*\.\w+)", out))):
            if not os.path.exists(os.path.join(ROOT, path)):
                problems.append(f"`app {' '.join(args)} --help` names {path}, which does not exist in the repository")
    return problems


def main():
    app = os.path.abspath(os.environ.get("APP_BIN") or os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "app"))
    if not os.access(app, os.X_OK):
        sys.exit(f"check-docs: {app} is not an executable: cargo build --bin app, or set APP_BIN")
    kubectl = shutil.which("kubectl")
    if not kubectl:
        sys.exit("check-docs: kubectl (for kubectl kustomize) is missing: run scripts/setup.sh")
    problems, summary = help_paths(app), []
    for path in doc_files():
        runnable, illustrative, pending = [], 0, 0
        for line, heading, lang, body in blocks(path):
            if not is_command_block(lang, body):
                continue
            if (path, heading) in PENDING or (path, None) in PENDING:
                pending += 1
                continue
            first = next((l for l in body if l.strip()), "")
            marker = ILLUSTRATIVE.match(first)
            if marker:
                illustrative += 1
                if len(marker.group(1).strip()) < 10:
                    problems.append(f"{path}:{line}: `# illustrative:` needs its reason (what it needs that a check cannot have)")
            else:
                runnable.append((line, body))
        summary.append(f"{path}: {len(runnable)} run, {illustrative} illustrative"
                       + (f", {pending} pending (not run: {', '.join(set(v for (p, _), v in PENDING.items() if p == path))})" if pending else ""))
        if not runnable:
            continue
        with tempfile.TemporaryDirectory(prefix="check-docs.") as tmp:
            repo, home, tmpdir, bin_dir, state = (os.path.join(tmp, d) for d in ("repo", "home", "tmp", "bin", "state"))
            for d in (repo, home, tmpdir, bin_dir, state):
                os.makedirs(d)
            editor = os.path.join(bin_dir, "docs-editor")
            with open(editor, "w") as f:
                f.write("#!/bin/sh\n# What the docs ask an editor to do: replace params.env's placeholders.\n"
                        "sed -e 's|^IMAGE=.*|IMAGE=registry.docs.example/team/discbaboons-app|' "
                        "-e 's|^DOMAIN=.*|DOMAIN=api.docs.example|' -e 's|^ACME_EMAIL=.*|ACME_EMAIL=ops@docs.example|' "
                        "-e 's|^STORAGE_CLASS=.*|STORAGE_CLASS=standard|' \"$1\" >\"$1.new\" && mv \"$1.new\" \"$1\"\n")
            os.chmod(editor, 0o755)
            copy_repo(repo)
            if path != "deploy/README.md":
                # The other docs start where deploy/README.md's first deployment leaves a
                # user: with the parameters set and committed.
                subprocess.run(["sh", editor, os.path.join(repo, "deploy/overlays/prod/params.env")], check=True)
                subprocess.run(["git", "-C", repo, "-c", "user.name=check-docs", "-c", "user.email=check-docs@localhost",
                                "commit", "-qam", "prod parameters"], check=True)
            os.symlink(app, os.path.join(bin_dir, "app"))
            env = {
                "PATH": f"{bin_dir}:{ROOT}/scripts/stubs:{os.environ['PATH']}",
                "HOME": home, "TMPDIR": tmpdir, "TERM": "dumb", "LANG": "C.UTF-8", "EDITOR": editor,
                "APP_BIN": app, "STUB_CALLS": os.path.join(state, "calls"), "STUB_STATE": state,
                "STUB_REAL_KUBECTL": kubectl,
                # A block that reaches for a database must fail, never meet the machine's own
                # PostgreSQL on localhost:5432.
                "APP_DATABASE__HOST": "127.0.0.1", "APP_DATABASE__PORT": "9",
                # A user's git knows who they are.
                "GIT_AUTHOR_NAME": "check-docs", "GIT_AUTHOR_EMAIL": "check-docs@localhost",
                "GIT_COMMITTER_NAME": "check-docs", "GIT_COMMITTER_EMAIL": "check-docs@localhost",
            }
            for name, var in (("cluster", "DOCS_CLUSTER_RECIPIENT"), ("newcluster", "DOCS_NEW_CLUSTER_RECIPIENT"),
                              ("postgres", "DOCS_POSTGRES_RECIPIENT")):
                keygen = subprocess.run([app, "seal", "keygen", "-o", os.path.join(tmp, f"{name}.key")],
                                        env=env, check=True, capture_output=True, text=True)
                env[var] = keygen.stdout.strip().splitlines()[-1]
            ok, text = run_file(path, runnable, env, repo)
            if os.environ.get("CHECK_DOCS_VERBOSE"):
                print(f"---- {path}\n{text}")
            if not ok:
                problems.append(f"{path}: a block failed; its run:\n" + "\n".join(text.splitlines()[-40:]))
    print("\n".join(summary))
    if problems:
        print("\n\n".join(problems), file=sys.stderr)
        sys.exit(1)
    print("check-docs: every command block runs or is marked illustrative")


if __name__ == "__main__":
    main()
