#!/usr/bin/env bash
# The step of shipit's GitHub action (action.yml): runs `shipit run` with the action's inputs,
# in the shipit image or as the shipit on PATH (`version: installed`), and hands on its outputs.
#
# Inputs arrive as SHIPIT_INPUT_FILE, _ENV, _ONLY, _VERSION and _IMAGE. shipit itself appends
# run-id, status, digests, refs and deploy-statuses to $GITHUB_OUTPUT (it sees GITHUB_ACTIONS);
# this script adds exit-code, result-file and junit-file. It exits with shipit's exit code.
set -uo pipefail

# fail MESSAGE: an annotation, and exit 2, shipit's code for invalid input.
fail() {
  printf '::error title=shipit action::%s\n' "$1"
  exit 2
}

[[ -n ${GITHUB_OUTPUT:-} ]] || fail "GITHUB_OUTPUT is not set: this script runs as a step of a GitHub Actions job"
reports=$(mktemp -d "${RUNNER_TEMP:-/tmp}/shipit.XXXXXX") || fail "could not make a folder for the reports in ${RUNNER_TEMP:-/tmp}"
result_file=$reports/result.json
junit_file=$reports/junit.xml

args=(--file "${SHIPIT_INPUT_FILE:-shipit.yaml}")
if [[ -n ${SHIPIT_INPUT_ENV:-} ]]; then args+=(--env "$SHIPIT_INPUT_ENV"); fi
args+=(run --result-file "$result_file" --junit-file "$junit_file")
read -ra stages <<<"${SHIPIT_INPUT_ONLY:-}"
for stage in "${stages[@]}"; do args+=(--only "$stage"); done

# in_image: sets `command` to run shipit in its image. The socket, the working directory, the
# workspace, the folders of the files GitHub hands the step and the reports are mounted at their
# own paths, so every path means the same inside the container and out; shipit runs as the
# runner's user, so what it writes belongs to the job, and in the socket's group.
in_image() {
  local socket=/var/run/docker.sock dir name config
  case ${DOCKER_HOST:-} in
  "") ;;
  unix://*) socket=${DOCKER_HOST#unix://} ;;
  *) fail "DOCKER_HOST names no local socket, which the shipit image needs mounted; run a shipit on PATH with version: installed" ;;
  esac
  [[ -S $socket ]] || fail "there is no Docker socket at $socket for the shipit image"
  [[ -n ${SHIPIT_INPUT_IMAGE:-} ]] || fail "the image input is empty"
  command=(docker run --rm --network host
    --user "$(id -u):$(id -g)" --group-add "$(stat -c %g "$socket")"
    --volume "$socket:/var/run/docker.sock" --env DOCKER_HOST=unix:///var/run/docker.sock
    --env HOME=/tmp --workdir "$PWD")
  local -A mounted=()
  for dir in "$PWD" "${GITHUB_WORKSPACE:-}" "$(dirname "$GITHUB_OUTPUT")" \
    "$(dirname "${GITHUB_STEP_SUMMARY:-$GITHUB_OUTPUT}")" "$reports"; do
    [[ -n $dir && -z ${mounted[$dir]:-} ]] || continue
    mounted[$dir]=1
    command+=(--volume "$dir:$dir")
  done
  # Registry logins (docker/login-action) live in the Docker config; credential helpers it names
  # are not in the image.
  config=${DOCKER_CONFIG:-${HOME:-/nonexistent}/.docker}
  if [[ -f $config/config.json ]]; then
    command+=(--volume "$config:/shipit-docker-config:ro" --env DOCKER_CONFIG=/shipit-docker-config)
  fi
  # Every variable of the step goes in by name (its value never on a command line), except those
  # that describe this machine rather than the job.
  while IFS= read -r name; do
    case $name in
    PATH | HOME | HOSTNAME | PWD | OLDPWD | SHLVL | _ | TMPDIR | USER | LOGNAME | SHELL | \
      DOCKER_HOST | DOCKER_CONFIG | DOCKER_CONTEXT | DOCKER_CERT_PATH | DOCKER_TLS_VERIFY | \
      LD_* | XDG_* | SHIPIT_INPUT_*) ;;
    *) command+=(--env "$name") ;;
    esac
  done < <(compgen -e)
  command+=("$SHIPIT_INPUT_IMAGE:$SHIPIT_INPUT_VERSION" "${args[@]}")
}

case ${SHIPIT_INPUT_VERSION:-} in
"") fail "the version input is empty: name a tag of the shipit image, or installed" ;;
installed)
  command -v shipit >/dev/null || fail "version is installed, but there is no shipit on PATH"
  command=(shipit "${args[@]}")
  ;;
*) in_image ;;
esac

# GitHub cancels a step by signalling this script: pass the signal on, so shipit stops its
# stages cleanly and journals the run as interrupted (`shipit resume` continues it).
"${command[@]}" &
child=$!
trap 'kill -INT "$child" 2>/dev/null' INT
trap 'kill -TERM "$child" 2>/dev/null' TERM
wait "$child"
code=$?
# A wait cut short by a trapped signal returns 128+N while shipit still runs: wait for its end.
while ((code > 128)) && kill -0 "$child" 2>/dev/null; do
  wait "$child"
  code=$?
done

{
  echo "exit-code=$code"
  if [[ -f $result_file ]]; then echo "result-file=$result_file"; fi
  if [[ -f $junit_file ]]; then echo "junit-file=$junit_file"; fi
} >>"$GITHUB_OUTPUT"
exit "$code"
