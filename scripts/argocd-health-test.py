#!/usr/bin/env python3
"""Runs Argo CD health-check tests (health_test.yaml) with real Lua 5.1 interpreters.

    python3 scripts/argocd-health-test.py [argocd/resource_customizations] [--gopher-lua BINARY]

Layout, as in Argo CD's own repository: <dir>/<group>/<Kind>/health.lua, health_test.yaml with
`tests: [{inputPath, healthStatus: {status, message}}]`, and testdata/*.yaml.

For every test the object in `inputPath` becomes a Lua table literal bound to the global `obj`,
health.lua runs as a chunk in a fresh interpreter with only the libraries Argo CD gives scripts
(base, string, table, math: no io, os, debug, require), and the returned `hs.status` and
`hs.message` must equal the expected ones exactly. Also checked:
  - every testdata file is used by a test;
  - every `return` line of every health.lua ran in at least one test (line coverage from a
    debug hook outside the sandbox; identical scripts of several kinds are counted together).

Interpreters: `lua5.1` (PUC-Rio Lua 5.1.5, Debian's package) when on PATH, else `lupa.lua51` (the
same Lua 5.1.5 embedded in the lupa wheel), for machines without root; and with `--gopher-lua`,
every test again under gopher-lua (github.com/yuin/gopher-lua, the interpreter Argo CD embeds;
scripts/gopher-lua builds the runner). gopher-lua has no debug.sethook, so line coverage comes
from the PUC-Rio run. Needs PyYAML.
Prints one line per test and `N passed, M failed`; exits 1 on any failure.
"""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as the strings Kubernetes sends (RFC 3339 text)."""


_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.copy().items()
}


def lua_string(text: str) -> str:
    out = ['"']
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif 0x20 <= byte < 0x7F:
            out.append(ch)
        else:
            out.append("\\%d" % byte)  # Lua 5.1 decimal escape
    out.append('"')
    return "".join(out)


def lua_value(value) -> str:
    """A Python value from YAML as a Lua 5.1 expression (how Argo CD maps JSON to Lua)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(v) for v in value if v is not None) + "}"
    if isinstance(value, dict):
        items = ("[%s] = %s" % (lua_string(str(k)), lua_value(v)) for k, v in value.items() if v is not None)
        return "{" + ", ".join(items) + "}"
    raise TypeError("cannot express %r in Lua" % (value,))


# The harness: sandboxed health.lua, line hook for coverage, results as a NUL-separated string.
HARNESS = r"""
local code = %(code)s
local chunk, err = loadstring(code, "@health.lua")
if chunk == nil then error("health.lua does not compile: " .. err) end
local sandbox = {
  obj = %(obj)s,
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
  pcall = pcall, select = select, tonumber = tonumber, tostring = tostring, type = type,
  unpack = unpack, string = string, table = table, math = math,
}
setfenv(chunk, sandbox)
local lines = {}
local hook = debug.sethook  -- absent in gopher-lua: no coverage there
if hook then
  hook(function(_, line)
    if debug.getinfo(2, "S").source == "@health.lua" then lines[line] = true end
  end, "l")
end
local ok, hs = pcall(chunk)
if hook then hook() end
if not ok then error("health.lua failed: " .. tostring(hs)) end
if type(hs) ~= "table" then error("health.lua returned " .. type(hs) .. ", not a table") end
local covered = {}
for line in pairs(lines) do covered[#covered + 1] = tostring(line) end
return tostring(hs.status) .. "\0" .. tostring(hs.message) .. "\0" .. table.concat(covered, ",")
"""


class Lua:
    def __init__(self, binary=None, name=None):
        self.binary = binary or shutil.which("lua5.1")
        if name:
            self.name = name
        elif self.binary:
            version = subprocess.run([self.binary, "-v"], capture_output=True, text=True)
            self.name = (version.stdout + version.stderr).strip().split("  ")[0] + " (lua5.1)"
        else:
            import lupa.lua51  # noqa: F401  (fails loudly when neither is installed)

            self.name = "Lua 5.1 (lupa.lua51)"

    def run(self, program: str) -> bytes:
        if self.binary:
            wrapped = "io.write((function() %s end)())" % program
            proc = subprocess.run([self.binary, "-"], input=wrapped.encode(), capture_output=True)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr.decode(errors="replace").strip())
            return proc.stdout
        import lupa.lua51 as lupa

        runtime = lupa.LuaRuntime(encoding=None)
        return runtime.execute(program.encode())


def main() -> int:
    args = sys.argv[1:]
    gopher = None
    if "--gopher-lua" in args:
        i = args.index("--gopher-lua")
        gopher = Lua(binary=args[i + 1], name="gopher-lua (Argo CD's interpreter)")
        del args[i : i + 2]
    root = Path(args[0] if args else "argocd/resource_customizations")
    lua = Lua()
    interpreters = [lua] + ([gopher] if gopher else [])
    print("argocd health tests with %s" % ", ".join(i.name for i in interpreters))
    passed = failed = 0
    # coverage per distinct script: sha -> (return lines, covered lines, [paths])
    coverage = {}
    tests_files = sorted(root.glob("*/*/health_test.yaml"))
    if not tests_files:
        print("no health_test.yaml under %s" % root)
        return 1
    for tests_file in tests_files:
        kind_dir = tests_file.parent
        label = "%s/%s" % (kind_dir.parent.name, kind_dir.name)
        script = (kind_dir / "health.lua").read_text()
        sha = hashlib.sha256(script.encode()).hexdigest()
        returns = {i for i, line in enumerate(script.splitlines(), 1) if line.strip().startswith("return ")}
        entry = coverage.setdefault(sha, (returns, set(), []))
        entry[2].append(label)
        tests = yaml.load(tests_file.read_text(), Loader=_Loader)["tests"]
        used = set()
        for test in tests:
            input_path = kind_dir / test["inputPath"]
            used.add(input_path.resolve())
            want = test["healthStatus"]
            for interpreter in interpreters:
                name = "%s %s [%s]" % (label, test["inputPath"], interpreter.name.split(" ")[0])
                try:
                    obj = yaml.load(input_path.read_text(), Loader=_Loader)
                    out = interpreter.run(HARNESS % {"code": lua_string(script), "obj": lua_value(obj)})
                    status, message, lines = out.decode("utf-8").split("\0")
                    entry[1].update(int(n) for n in lines.split(",") if n)
                except Exception as exc:  # a broken script or test file is a failed test, not a crash
                    failed += 1
                    print("FAIL %s: %s" % (name, exc))
                    continue
                got = {"status": status, "message": message}
                expected = {"status": want.get("status"), "message": want.get("message", "nil")}
                if got == expected:
                    passed += 1
                    print("ok   %s -> %s: %s" % (name, status, message))
                else:
                    failed += 1
                    print("FAIL %s\n       want %s: %s\n       got  %s: %s"
                          % (name, expected["status"], expected["message"], status, message))
        for unused in sorted(p for p in (kind_dir / "testdata").glob("*.yaml") if p.resolve() not in used):
            failed += 1
            print("FAIL %s: testdata/%s is not used by any test" % (label, unused.name))
    for returns, covered, labels in coverage.values():
        missing = sorted(returns - covered)
        if missing:
            failed += 1
            print("FAIL health.lua of %s: return on line(s) %s never reached by a test"
                  % (", ".join(labels), ", ".join(map(str, missing))))
        else:
            print("ok   health.lua of %s: all %d return lines reached" % (", ".join(labels), len(returns)))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
