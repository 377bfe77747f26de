"""docs/protocol.md and docs/configuration.md against the code, so they cannot drift apart:

- the error codes in protocol.md's Errors table are exactly agent/error.cpp's to_string;
- its states and reasons are exactly include/sandbox_agent/status.hpp's;
- every op in its socket table is accepted by the running agent (an undocumented one is
  `unknown_op`), and every op the parser knows is documented;
- every request field and op argument in its tables is known to the parser: sent with a wrong
  type it is `invalid_request` naming that field, not an unknown field; every field the parser
  knows is documented;
- the ```json request example renders with `sandbox-agent render`;
- every key in configuration.md's table is accepted by `--check-config` with its documented
  default, and every key the configuration parser knows is in that table;
- spool.md's shell examples (a drop, a bounded wait) work against the agent.
"""
import json
import os
import re
import subprocess
import unittest

from harness import AGENT, SANDBOX_INIT, AgentTestCase, Client

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def read(*parts):
    with open(os.path.join(REPO, *parts)) as f:
        return f.read()


def split_row(line):
    # Cells are separated by | except an escaped \| inside a cell.
    cells = re.split(r"(?<!\\)\|", line.strip())
    return [c.strip().replace("\\|", "|") for c in cells[1:-1]]


def tables(markdown):
    """Every table: (header cells, rows of cells, the last non-blank line before it)."""
    lines = markdown.splitlines()
    found = []
    i = 0
    in_code = False
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("|") and i + 1 < len(lines) and re.match(r"^\|[-| :]+\|$", lines[i + 1]):
            header = split_row(line)
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(split_row(lines[i]))
                i += 1
            found.append((header, rows, before))
            continue
        i += 1
    return found


def table(markdown, *header):
    matching = [t for t in tables(markdown) if t[0] == list(header)]
    if not matching:
        raise AssertionError(f"no table with the header {header}")
    return matching


def code_spans(cell):
    return re.findall(r"`([^`]+)`", cell)


def first_code(cell):
    spans = code_spans(cell)
    if not spans:
        raise AssertionError(f"no `name` in the cell {cell!r}")
    return spans[0]


def fenced_blocks(markdown):
    """[(info string, content)] of every ``` block, in order."""
    blocks, info, content = [], None, []
    for line in markdown.splitlines():
        if line.startswith("```"):
            if info is None:
                info, content = line[3:].strip(), []
            else:
                blocks.append((info, "\n".join(content) + "\n"))
                info = None
        elif info is not None:
            content.append(line)
    return blocks


def json_block(markdown, info):
    """The first ``` block whose info string is exactly `info`."""
    for block_info, content in fenced_blocks(markdown):
        if block_info == info:
            return content
    raise AssertionError(f"no ```{info} block")


class ProtocolDocTest(AgentTestCase):
    @classmethod
    def setUpClass(cls):
        cls.md = read("docs", "protocol.md")

    # --- against the source -------------------------------------------------------------

    def test_error_codes_are_error_cpp(self):
        documented = [first_code(r[0]) for _, rows, _ in table(self.md, "code", "when") for r in rows]
        source = read("agent", "error.cpp")
        body = source[source.index("to_string(ErrorCode code)"):]
        body = body[:body.index("\n}\n")]
        cases = re.findall(r'case ErrorCode::(\w+): return "([^"]+)";', body)
        self.assertTrue(cases)
        for name, text in cases:
            self.assertEqual(name, text, "an error code whose wire name differs from its enumerator")
        self.assertEqual(len(documented), len(set(documented)), "an error code documented twice")
        self.assertEqual(sorted(documented), sorted(text for _, text in cases))
        enum = re.search(r"enum class ErrorCode \{(.*?)\};", read("include", "sandbox_agent", "error.hpp"), re.S).group(1)
        self.assertEqual(sorted(re.findall(r"\b(\w+)\b", enum)), sorted(documented))

    def test_states_and_reasons_are_status_hpp(self):
        header = read("include", "sandbox_agent", "status.hpp")
        enum = re.search(r"enum class SandboxState \{(.*?)\};", header, re.S).group(1)
        states = [s.strip() for s in enum.split(",") if s.strip()]
        reasons_src = header[header.index("namespace reason {"):header.index("}  // namespace reason")]
        reasons = re.findall(r'inline constexpr std::string_view (\w+) = "([^"]+)";', reasons_src)
        for name, text in reasons:
            self.assertEqual(name, text)
        # The wire names of the states (status.cpp) are the enumerators' names.
        status_cpp = read("agent", "status.cpp")
        for name, text in re.findall(r'case SandboxState::(\w+): return "([^"]+)";', status_cpp):
            self.assertEqual(name, text)

        doc_states = [first_code(r[0]) for _, rows, _ in table(self.md, "state", "meaning") for r in rows]
        doc_reasons = [first_code(r[0]) for _, rows, _ in table(self.md, "reason", "with", "meaning") for r in rows]
        self.assertEqual(sorted(doc_states), sorted(states))
        self.assertEqual(sorted(doc_reasons), sorted(text for _, text in reasons))
        # The "with" column names documented states only.
        for _, rows, _ in table(self.md, "reason", "with", "meaning"):
            for r in rows:
                for s in re.split(r",\s*", r[1]):
                    self.assertIn(s.strip("` "), states, r)
        # So does the state diagram.
        diagram = json_block(self.md, "")
        self.assertIn("accepted", diagram)
        words = set(re.findall(r"[a-z_]+", diagram)) - {"plain", "with", "reason", "from", "any", "state", "before"}
        self.assertLessEqual(words, set(states), "the diagram names a state the code does not have")

    # --- against the running agent ------------------------------------------------------

    def socket_ops(self):
        ops = {}
        for _, rows, _ in table(self.md, "op", "arguments", "reply"):
            for r in rows:
                args = [a for a in code_spans(r[1]) if not a.startswith('"')]
                ops[first_code(r[0])] = args
        return ops

    def call(self, agent, msg):
        c = Client(agent.socket_path, timeout=10)
        try:
            return c.call(msg)
        finally:
            c.close()

    def test_every_documented_op_is_accepted_and_no_other(self):
        a = self.start_agent()
        ops = self.socket_ops()
        self.assertEqual(sorted(ops), sorted(["launch", "status", "list", "stop", "watch", "stats", "version", "extend", "logs", "exec", "cp", "pools", "metrics"]))
        for op in ops:
            reply = self.call(a, {"op": op, "tag": op})
            self.assertEqual(reply.get("tag"), op)
            self.assertNotEqual(reply.get("error", {}).get("code"), "unknown_op", (op, reply))
        for op in ("frobnicate", "Launch", "ps", "kill", ""):
            reply = self.call(a, {"op": op})
            self.assertEqual(reply["error"]["code"], "unknown_op", (op, reply))
        # Every op the parser knows is in the table.
        parsed = re.findall(r'\{"(\w+)", Op::\w+\}', read("agent", "protocol.cpp"))
        self.assertEqual(sorted(parsed), sorted(ops))

    def test_every_op_argument_is_known_to_the_parser(self):
        a = self.start_agent()
        for op, args in self.socket_ops().items():
            for arg in args:
                # [[]] is wrong for every argument: not a scalar, not an object, not an
                # array of strings (an empty list can be right: exec's env).
                reply = self.call(a, {"op": op, arg: [[]]})
                self.assertFalse(reply["ok"], (op, arg, reply))
                self.assertEqual(reply["error"]["code"], "invalid_request", (op, arg, reply))
                field = reply["error"].get("field", "")
                self.assertTrue(field == f"/{arg}" or field.startswith(f"/{arg}/"), (op, arg, reply))
                self.assertNotIn("unknown field", reply["error"]["message"])
                self.assertNotIn("not an argument", reply["error"]["message"])
        # And an argument of another op is named as such.
        reply = self.call(a, {"op": "list", "id": "x"})
        self.assertEqual((reply["error"]["code"], reply["error"].get("field")), ("invalid_request", "/id"))

    def request_fields(self):
        """(JSON pointer, documented type or None) for every field in the request tables,
        including the members named in a type ("object `uid`, `gid`")."""
        fields = {}
        for _, rows, before in table(self.md, "field", "type", "default", "rules"):
            m = re.fullmatch(r"`(\w+)`:", before.strip())
            prefix = f"/{m.group(1)}" if m else ""
            for r in rows:
                name, type_ = first_code(r[0]), r[1]
                pointer = f"{prefix}/{name}"
                fields[pointer] = type_
                if type_.startswith("array of objects"):
                    for member in code_spans(type_):
                        fields.setdefault(f"{pointer}/0/{member}", None)
                elif type_.startswith("object ") and code_spans(type_):
                    for member in code_spans(type_):
                        fields.setdefault(f"{pointer}/{member}", None)
        return fields

    @staticmethod
    def nest(pointer, value):
        """{"a": {"b": value}} for /a/b; /a/0/b makes a one-element array."""
        parts = pointer.strip("/").split("/")
        for part in reversed(parts[1:]):
            value = [value] if part.isdigit() else {part: value}
        return parts[0], value

    def test_every_request_field_is_known_to_the_parser(self):
        a = self.start_agent()
        fields = self.request_fields()
        self.assertIn("/docker/ready_timeout_ms", fields)
        self.assertIn("/mounts/0/destination", fields)
        self.assertIn("/user/uid", fields)
        for pointer, type_ in sorted(fields.items()):
            wrong = 7 if (type_ or "").startswith("array") else []
            key, value = self.nest(pointer, wrong)
            request = {"rootfs": a.rootfs}
            request[key] = value
            reply = self.call(a, {"op": "launch", "request": request})
            self.assertFalse(reply["ok"], (pointer, reply))
            self.assertEqual(reply["error"]["code"], "invalid_request", (pointer, reply))
            self.assertEqual(reply["error"].get("field"), pointer, (pointer, reply))
            self.assertNotIn("unknown field", reply["error"]["message"], pointer)
        # An undocumented field is refused as unknown, so the check above means something.
        reply = self.call(a, {"op": "launch", "request": {"rootfs": a.rootfs, "colour": "blue"}})
        self.assertEqual((reply["error"].get("field"), reply["error"]["message"]), ("/colour", "unknown field"))
        # Every field the parser reads is documented.
        source = read("agent", "request.cpp")
        parsed = set(re.findall(r'key == "(\w+)"', source))
        documented = {p.rsplit("/", 1)[1] for p in fields}
        self.assertEqual(sorted(parsed - documented), [], "fields request.cpp reads that protocol.md does not document")

    def test_the_request_example_renders(self):
        example = json.loads(json_block(self.md, "json request"))
        documented = {p for p in self.request_fields() if p.count("/") == 1}
        self.assertLessEqual({f"/{k}" for k in example}, documented)
        # The example's host paths, moved under a temporary allowed prefix.
        prefix = os.path.join(self.tmp, "srv")

        def moved(path):
            self.assertTrue(path.startswith("/srv/"), path)
            target = os.path.join(prefix, path[len("/srv/"):])
            os.makedirs(target, exist_ok=True)
            return target

        example["rootfs"] = moved(example["rootfs"])
        for m in example.get("mounts", []):
            m["source"] = moved(m["source"])
        req = os.path.join(self.tmp, "request.json")
        with open(req, "w") as f:
            json.dump(example, f)
        cfg = os.path.join(self.tmp, "config.json")
        with open(cfg, "w") as f:
            json.dump({"allowed_host_prefixes": [prefix], "sandbox_init": os.path.abspath(SANDBOX_INIT)}, f)
        r = subprocess.run([os.path.abspath(AGENT), "--config", cfg, "--root", os.path.join(self.tmp, "root"),
                            "render", req], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        spec = json.loads(r.stdout)
        self.assertEqual(spec["root"]["path"], example["rootfs"])
        self.assertEqual(spec["hostname"], example["hostname"])
        self.assertEqual(spec["annotations"].get("dev.sandbox-agent.label.batch-job"), "1234")


class SpoolDocTest(AgentTestCase):
    """spool.md's ```sh drop and ```sh wait blocks, run as written, with the agent's spool,
    an image under its allowed prefix and the fake runtime."""

    @classmethod
    def setUpClass(cls):
        md = read("docs", "spool.md")
        cls.drop = json_block(md, "sh drop")
        cls.wait = json_block(md, "sh wait")

    def run_block(self, block, agent, name="job-1234.json", **replace):
        script = block.replace("/var/lib/sandbox-agent/spool", os.path.join(agent.root, "spool"))
        script = script.replace("/srv/images/ubuntu-docker", agent.rootfs).replace("job-1234.json", name)
        for old, new in replace.items():
            self.assertIn(old, script)
            script = script.replace(old, new)
        return subprocess.run(["/bin/sh", "-eu", "-c", script], capture_output=True, text=True, timeout=150)

    def test_drop_then_wait_until_ready(self):
        a = self.start_agent()
        r = self.run_block(self.drop, a)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(os.listdir(os.path.join(a.root, "spool", "tmp")), [])
        r = self.run_block(self.wait, a)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), os.path.join(a.root, "sockets", "job-1234", "docker.sock"))
        status = a.status("job-1234")
        self.assertEqual((status["state"], status["labels"]), ("ready", {"batch-job": "1234"}))

    def test_wait_reports_a_rejected_request(self):
        a = self.start_agent()
        r = self.run_block(self.drop, a, name="job-bad.json", **{'"labels"': '"colour"'})
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.run_block(self.wait, a, name="job-bad.json")
        self.assertEqual(r.returncode, 1)
        self.assertIn('rejected: {"ok":false,"error":{"code":"invalid_request"', r.stderr)
        self.assertIn('"field":"/colour"', r.stderr)

    def test_wait_reports_a_failed_sandbox(self):
        a = self.start_agent()
        r = self.run_block(self.drop, a, name="job-fail.json",
                           **{'"labels"': '"env": ["FAKE_RUNSC=create=fail"], "labels"'})
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.run_block(self.wait, a, name="job-fail.json")
        self.assertEqual(r.returncode, 1)
        self.assertRegex(r.stderr, r'^failed: \{"id":"job-1234","state":"failed","reason":"runsc_create_failed"')

    def test_wait_is_bounded(self):
        a = self.start_agent()
        r = self.run_block(self.wait, a, name="never-dropped.json", **{"+ 120 ))": "+ 1 ))"})
        self.assertEqual(r.returncode, 1)
        self.assertIn("timed out in state (none yet)", r.stderr)


class ConfigurationDocTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.md = read("docs", "configuration.md")
        cls.example = json.loads(json_block(cls.md, "json"))

    def setUp(self):
        import tempfile
        self.tmp = tempfile.mkdtemp(prefix="sa-docs-")

    def tearDown(self):
        import shutil
        shutil.rmtree(self.tmp, ignore_errors=True)

    def documented(self):
        """[(dotted key, default cell text, index within a combined row, row size)]."""
        out = []
        for _, rows, _ in table(self.md, "key", "default", "meaning"):
            for r in rows:
                names = code_spans(r[0])
                section = names[0].split(".")[0] if "." in names[0] else ""
                keys = [n if "." in n or not section else f"{section}.{n}" for n in names]
                for i, k in enumerate(keys):
                    out.append((k, r[1], i, len(keys)))
        return out

    def example_value(self, key):
        v = self.example
        for part in key.split("."):
            if not isinstance(v, dict) or part not in v:
                return None
            v = v[part]
        return v

    def default_of(self, key, cell, index, count):
        """The documented default as a JSON value, or the configuration example's value when
        the default is a description ("2 × cores", "beside the agent binary")."""
        text = re.sub(r"\(flag [^)]*\)", "", cell).strip()
        if count > 1:
            parts = [p.strip() for p in text.split(",")]
            self.assertEqual(len(parts), count, f"{key}: {cell!r} does not give one default per key")
            text = parts[index]
        example = self.example_value(key)
        m = re.fullmatch(r"(\d+) × cores", text)
        if m:
            return int(m.group(1)) * os.cpu_count(), "cores"
        spans = code_spans(text)
        if spans and re.fullmatch(r"(`[^`]+`)(,\s*`[^`]+`)*", text):
            if len(spans) > 1 or isinstance(example, list) and not spans[0].startswith("["):
                values = spans if len(spans) > 1 else spans[0].split()
                return values, "literal"
            text = spans[0]
        elif spans:  # prose around the names
            self.assertIsNotNone(example, f"{key}: the default {cell!r} is not a value and the example lacks the key")
            return example, "example"
        try:
            return json.loads(text), "literal"
        except ValueError:
            return text, "literal"

    def check_config(self, config):
        path = os.path.join(self.tmp, "config.json")
        with open(path, "w") as f:
            json.dump(config, f)
        return subprocess.run([os.path.abspath(AGENT), "--config", path, "--check-config"],
                              capture_output=True, text=True, timeout=30)

    def test_every_key_takes_its_default(self):
        documented = self.documented()
        self.assertGreater(len(documented), 25)
        for key, cell, index, count in documented:
            value, source = self.default_of(key, cell, index, count)
            example = self.example_value(key)
            if example is not None:
                self.assertIs(type(value), type(example), f"{key}: default {value!r} vs the example's {example!r}")
            config = {}
            parts = key.split(".")
            node = config
            for part in parts[:-1]:
                node = node.setdefault(part, {})
            node[parts[-1]] = value
            r = self.check_config(config)
            self.assertEqual(r.returncode, 0, f"{key} = {value!r} ({source}): {r.stderr}")
            if source == "cores":
                r = subprocess.run([os.path.abspath(AGENT), "--check-config"], capture_output=True, text=True, timeout=30)
                self.assertIn(f"at most {value} at once", r.stdout, "the documented runsc.max_concurrent default")

    def test_the_example_is_valid(self):
        r = self.check_config(self.example)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_every_key_the_parser_knows_is_documented(self):
        source = read("agent", "config.cpp")
        keys = set()
        for m in re.finditer(r"Status parse_(\w+)\(json::value \w+, const Ptr& at, \w+& c\)", source):
            body = source[m.end():source.index("\n}\n", m.end())]
            for k in re.findall(r'k == "(\w+)"', body):
                keys.add(f"{m.group(1)}.{k}")
        top = source[source.index("Status parse_top("):]
        top = top[:top.index("\n}\n")]
        for k, handler in re.findall(r'k == "(\w+)"\) return ([\w:]+)\(', top):
            if handler.startswith("parse_") and handler != "parse_mode":
                self.assertIn(handler[len("parse_"):], {s.split(".")[0] for s in keys}, handler)
            else:
                keys.add(k)
        documented = {k for k, *_ in self.documented()}
        self.assertEqual(sorted(keys - documented), [], "keys config.cpp reads that configuration.md does not document")
        self.assertEqual(sorted(documented - keys), [], "keys configuration.md documents that config.cpp does not read")


if __name__ == "__main__":
    unittest.main()
