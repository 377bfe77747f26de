# Shared by the Slurm hooks (prolog, epilog, taskprolog); sourced, not run. POSIX sh.
# Kept free of forks where it runs for every job (the TaskProlog runs for every task).
#
# The hooks' own config file: SANDBOX_AGENT_SLURM_CONF, else /etc/sandbox-agent/slurm.conf
# (docs/slurm.md). Lines `key = value`; `#` starts a comment; unknown keys are errors.
# The agent's config.json is not used: the agent rejects keys it does not know, and these
# are only the hooks' business.

# slurmd gives hooks no PATH.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

sa_hook=${0##*/}

sa_die() {
  echo "sandbox $sa_hook: $*" >&2
  exit 1
}

sa_uint() {
  case $1 in '' | *[!0-9]*) return 1 ;; esac
}

# sa_name WORD: a name Slurm or a template could use, with nothing a path or JSON would mind.
sa_name() {
  case $1 in '' | [!A-Za-z0-9]* | *[!A-Za-z0-9_.-]*) return 1 ;; esac
}

# sa_trim TEXT: $trimmed is TEXT without leading and trailing blanks.
sa_trim() {
  trimmed=${1#"${1%%[![:space:]]*}"}
  trimmed=${trimmed%"${trimmed##*[![:space:]]}"}
}

sa_load_config() {
  spool=/var/lib/sandbox-agent/spool
  socket=/var/lib/sandbox-agent/agent.sock
  sandboxctl=/usr/bin/sandboxctl
  templates=/etc/sandbox-agent/templates
  default_template=default
  prolog_timeout=120
  epilog_timeout=120
  stop_timeout_ms=10000
  sa_conf=${SANDBOX_AGENT_SLURM_CONF:-/etc/sandbox-agent/slurm.conf}
  if [ ! -e "$sa_conf" ]; then
    # The default file may be absent (defaults apply); a file named explicitly must exist.
    [ -z "${SANDBOX_AGENT_SLURM_CONF:-}" ] || sa_die "config $sa_conf: no such file"
    return 0
  fi
  [ -r "$sa_conf" ] || sa_die "config $sa_conf: not readable"
  n=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    line=${line%%#*}
    case $line in *[![:space:]]*) ;; *) continue ;; esac
    case $line in *=*) ;; *) sa_die "config $sa_conf:$n: expected key = value" ;; esac
    sa_trim "${line%%=*}"
    key=$trimmed
    sa_trim "${line#*=}"
    case $key in
      spool | socket | sandboxctl | templates | default_template) eval "$key=\$trimmed" ;;
      prolog_timeout | epilog_timeout | stop_timeout_ms)
        sa_uint "$trimmed" && [ "$trimmed" -gt 0 ] || sa_die "config $sa_conf:$n: $key must be a positive integer"
        eval "$key=\$trimmed" ;;
      *) sa_die "config $sa_conf:$n: unknown key '$key'" ;;
    esac
  done <"$sa_conf"
}

# The job on this node: spool file name and sandbox id (two slurmd on one host share the spool).
sa_job() {
  sa_uint "${SLURM_JOB_ID:-}" || sa_die "SLURM_JOB_ID is not set (run me from slurmd)"
  node=${SLURMD_NODENAME:-}
  sa_name "$node" || sa_die "SLURMD_NODENAME '$node' is not a usable node name"
  name=slurm-$SLURM_JOB_ID.$node.json
  id=slurm-$SLURM_JOB_ID-$node
  [ ${#id} -le 63 ] || sa_die "sandbox id $id is longer than 63 characters"
  status_file=$spool/status/$name
}

# sa_read_status: $status is the status file's line, empty when there is none (the agent
# replaces the file atomically: a read sees a whole line).
sa_read_status() {
  status=
  [ -f "$status_file" ] || return 0
  IFS= read -r status <"$status_file" || true
}

# sa_get KEY: $value is the first "KEY":"…" string of $status, up to its first quote. Right
# for the agent's id, state, reason, error code and field (no quotes in them; they come
# before any label) and for paths (docker_socket: the last one, after the labels).
sa_get() {
  value=
  case $status in *"\"$1\":\""*) ;; *) return 0 ;; esac
  if [ "$1" = docker_socket ]; then value=${status##*\"$1\":\"}; else value=${status#*\"$1\":\"}; fi
  value=${value%%\"*}
}

# sa_text KEY: the last "KEY":"…" string of $status as text (JSON escapes undone), for the
# messages and log tails a failure prints.
sa_text() {
  case $status in *"\"$1\":\""*) ;; *) return 0 ;; esac
  # up to the first quote not escaped by a backslash; \" here, \n \t \\ by printf %b
  printf '%s' "${status##*\"$1\":\"}" | sed 's/^\(\([^"\\]\|\\.\)*\)".*/\1/; s/\\"/"/g' | {
    IFS= read -r t || true
    printf '%b\n' "${t%\\n}"
  }
}

# $now: seconds since boot
sa_now() {
  read -r now _ </proc/uptime
  now=${now%.*}
}
