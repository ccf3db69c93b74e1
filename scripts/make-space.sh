#!/usr/bin/env bash
# Assembles a Hugging Face Space (sdk: docker) from this repository into <dir>: spaces/opencode-env/README.md (the
# Space's front matter and docs), the repository's Dockerfile and .dockerignore, and the sources the image is built
# from. The Space builds the image itself, so no package has to be published. Usage:
#   git clone https://huggingface.co/spaces/<owner>/<space> space && scripts/make-space.sh space
#   cd space && git add -A && git commit -m "opencode-env <version>" && git push
# <dir> may be new, empty, a fresh clone of a Space (README.md, .gitattributes), or an earlier output of this script,
# whose files are replaced (its .git and .gitattributes are kept). Anything else is refused, so that a wrong path
# deletes nothing.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 <space-dir>" >&2; exit 2; }
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="$1"
stamp=".opencode-env-space"
# What the Dockerfile's COPY instructions read from the build context.
sources=(package.json package-lock.json tsconfig.json scripts src resources)

mkdir -p "$out"
out="$(cd "$out" && pwd)"
[ "$out" != "$repo" ] || { echo "make-space: <space-dir> must not be the repository itself" >&2; exit 2; }

if [ -e "$out/$stamp" ]; then
  find "$out" -mindepth 1 -maxdepth 1 ! -name .git ! -name .gitattributes -exec rm -rf {} +
else
  unexpected="$(find "$out" -mindepth 1 -maxdepth 1 ! -name .git ! -name .gitattributes ! -name README.md ! -name Dockerfile \
    ! -name .dockerignore -printf '%f ')"
  if [ -n "$unexpected" ]; then
    echo "make-space: $out holds files this script did not make ($unexpected); use an empty directory or a Space clone" >&2
    exit 1
  fi
fi

# Only files git knows or would add (tracked, or new and not ignored): never node_modules/, dist/ or test leftovers.
cd "$repo"
git ls-files -z --cached --others --exclude-standard -- "${sources[@]}" |
  while IFS= read -r -d '' file; do
    [ -e "$file" ] || continue # deleted in the work tree, not yet in the index
    mkdir -p "$out/$(dirname "$file")"
    cp -p "$file" "$out/$file"
  done
cp Dockerfile .dockerignore "$out/"
cp spaces/opencode-env/README.md "$out/README.md"
echo "assembled by scripts/make-space.sh from opencode-env $(node -p 'require("./package.json").version')" >"$out/$stamp"
echo "make-space: Space in $out; commit and push it to build the Space"
