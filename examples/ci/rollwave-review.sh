#!/usr/bin/env bash
# Reviews a pull request (GitHub) or merge request (GitLab) of a fleet repository:
# `rollwave validate` at the head, `rollwave diff --format markdown` between the base
# and the head, posted as ONE comment that later pushes update in place (found by the
# marker line `<!-- rollwave diff -->` that the diff starts with).
#
#   ci/rollwave-review.sh BASE HEAD
#
# Run from the fleet repository's work tree, with both revisions fetched. Exit 1 when
# validation fails, a rendering fails or a tenancy policy refuses an object, so the
# check goes red; the comment is posted either way.
#
# Environment:
#   ROLLWAVE              the rollwave binary (default: rollwave on PATH)
#   GitHub Actions (GITHUB_ACTIONS=true):
#     GITHUB_TOKEN        the job's token (permissions: pull-requests: write)
#     GITHUB_API_URL      set by Actions (https://api.github.com)
#     GITHUB_REPOSITORY   set by Actions (owner/name)
#     PR_NUMBER           the pull request's number
#   GitLab CI (GITLAB_CI=true):
#     GITLAB_TOKEN        a project or group access token with the `api` scope (the
#                         job token cannot write notes)
#     CI_API_V4_URL, CI_PROJECT_ID, CI_MERGE_REQUEST_IID   set by GitLab
# Needs bash, curl and jq.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BASE HEAD" >&2
  exit 2
fi
base="$1"
head="$2"
rollwave="${ROLLWAVE:-rollwave}"
marker='<!-- rollwave diff -->'
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The change alone: from where the branch left the base, not from the base's tip.
from="$(git merge-base "$base" "$head" 2>/dev/null || echo "$base")"

status=0
if ! "$rollwave" validate --repo . --rev "$head" >"$work/validate.txt" 2>&1; then
  status=1
fi
if ! "$rollwave" diff --repo . --from "$from" --to "$head" --format markdown >"$work/comment.md" 2>"$work/diff-errors.txt"; then
  status=1
fi
if [[ ! -s "$work/comment.md" ]]; then
  # diff could not run at all (a revision missing, fleet.yaml unreadable): say why.
  printf '%s\n### rollwave: the review could not be made\n\n```\n%s\n```\n' \
    "$marker" "$(cat "$work/diff-errors.txt")" >"$work/comment.md"
fi
if [[ "$status" != 0 && -s "$work/validate.txt" ]]; then
  printf '\n#### `rollwave validate`\n\n```\n%s\n```\n' "$(tail -n 100 "$work/validate.txt")" >>"$work/comment.md"
fi
jq -Rs '{body: .}' <"$work/comment.md" >"$work/body.json"

# api METHOD URL [BODY_FILE]: one request with the platform's token; the answer on stdout.
api() {
  local args=(--silent --show-error --fail --max-time 60 -X "$1" "$2")
  if [[ "${GITHUB_ACTIONS:-}" == true ]]; then
    args+=(-H "Authorization: Bearer $GITHUB_TOKEN" -H "Accept: application/vnd.github+json")
  else
    args+=(-H "PRIVATE-TOKEN: $GITLAB_TOKEN")
  fi
  if [[ $# -ge 3 ]]; then
    args+=(-H "Content-Type: application/json" --data-binary "@$3")
  fi
  curl "${args[@]}"
}

# The id of the earlier review comment, if any: the first whose body starts with the
# marker, on any page of the list.
find_comment() { # LIST_URL
  local page=1 answer id
  while :; do
    answer="$(api GET "$1?per_page=100&page=$page")"
    id="$(jq -r --arg m "$marker" '[.[] | select((.body // "") | startswith($m)) | .id][0] // empty' <<<"$answer")"
    if [[ -n "$id" ]]; then
      echo "$id"
      return
    fi
    # A full page without it: look at the next one.
    if [[ "$(jq 'length' <<<"$answer")" -lt 100 ]]; then
      return
    fi
    page=$((page + 1))
  done
}

if [[ "${GITHUB_ACTIONS:-}" == true ]]; then
  list="$GITHUB_API_URL/repos/$GITHUB_REPOSITORY/issues/$PR_NUMBER/comments"
  id="$(find_comment "$list")"
  if [[ -n "$id" ]]; then
    api PATCH "$GITHUB_API_URL/repos/$GITHUB_REPOSITORY/issues/comments/$id" "$work/body.json" >/dev/null
    echo "updated comment $id"
  else
    api POST "$list" "$work/body.json" >/dev/null
    echo "posted the review comment"
  fi
elif [[ "${GITLAB_CI:-}" == true ]]; then
  list="$CI_API_V4_URL/projects/$CI_PROJECT_ID/merge_requests/$CI_MERGE_REQUEST_IID/notes"
  id="$(find_comment "$list")"
  if [[ -n "$id" ]]; then
    api PUT "$list/$id" "$work/body.json" >/dev/null
    echo "updated note $id"
  else
    api POST "$list" "$work/body.json" >/dev/null
    echo "posted the review note"
  fi
else
  # Anywhere else (a laptop): print the comment.
  cat "$work/comment.md"
fi
exit "$status"
