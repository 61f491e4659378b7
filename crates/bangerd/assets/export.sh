# banger workspace export, run in the guest by the agent: sh -c SCRIPT sh DIR BASE FORMAT
# Prints "banger-base <commit>" on the first line, then the patch. Never touches the
# repository's index, working tree or refs: `git add -A` runs on a copy of the index
# kept inside the git directory (a temporary index on another file system breaks git's
# rename of index.lock), removed on exit. Only loose objects are added.
set -eu
cd "$1"
requested=$2
format=$3
empty_tree=4b825dc642cb6eb9a060e54bf8d69288fbee4904
gitdir=$(git rev-parse --absolute-git-dir)
has_head=0
git rev-parse --verify -q 'HEAD^{commit}' >/dev/null && has_head=1
if [ -n "$requested" ]; then
    base=$(git rev-parse --verify -q "$requested^{commit}") || {
        echo "banger: base commit $requested is not in the guest's repository" >&2
        exit 3
    }
elif [ "$format" = mbox ] && [ "$has_head" = 1 ]; then
    base=$(git rev-list --max-parents=0 HEAD | tail -n 1)
elif [ "$has_head" = 1 ]; then
    base=$(git rev-parse 'HEAD^{commit}')
else
    base=$empty_tree
fi
index="$gitdir/banger-export-index.$$"
trap 'rm -f "$index" "$index.lock"' EXIT
if [ -f "$gitdir/index" ]; then cp "$gitdir/index" "$index"; fi
export GIT_INDEX_FILE="$index"
git add -A
diff() {
    git -c core.quotePath=true -c diff.noprefix=false -c diff.mnemonicPrefix=false \
        -c diff.relative=false -c diff.renames=true \
        diff --cached --binary --full-index -M --no-color --no-ext-diff --no-textconv \
        --src-prefix=a/ --dst-prefix=b/ "$@" --
}
printf 'banger-base %s\n' "$base"
if [ "$format" != mbox ]; then
    diff "$base"
    exit 0
fi
if [ "$has_head" = 1 ] && [ "$base" != "$(git rev-parse HEAD)" ]; then
    git -c core.quotePath=true format-patch --stdout --binary --full-index -M --no-color \
        --no-signature --src-prefix=a/ --dst-prefix=b/ "$base..HEAD"
fi
against=$empty_tree
[ "$has_head" = 1 ] && against=HEAD
if ! git diff --cached --quiet "$against" --; then
    ident=$(git var GIT_AUTHOR_IDENT 2>/dev/null || echo 'banger <banger@localhost> 0 +0000')
    ident=${ident% * *}
    printf 'From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n'
    printf 'From: %s\nDate: %s\nSubject: [PATCH] Uncommitted changes in the guest workspace\n\n---\n' \
        "$ident" "$(date -R)"
    diff "$against"
    printf -- '-- \nbanger\n\n'
fi
