#!/bin/sh
# A stand-in for a userland tool that refuses what macOS's BSD tools do not take the same way
# as GNU's, then runs the real tool. scripts/check-deploy.sh links it as sed, grep, date, ...
# into a directory first on PATH while deploy/rebuild.sh runs, so that its tests prove the
# script keeps to the flags both userlands share (macOS is the seed's laptop).
#
#   BSD_GUARD_PATH  the PATH to find the real tool on (without the guard's directory)
#   BSD_GUARD_LOG   each refusal is appended here, so a caller that hides stderr still fails
set -eu
tool=${0##*/}
log=${BSD_GUARD_LOG:?}
# letters: the option letters both userlands take the same way; with_arg: those taking a value;
# operands: any, none (stdin only) or template (exactly one, ending in XXXXXX).
operands=any
with_arg=""
case "$tool" in
    sed) letters=Ealnef with_arg=ef ;; # and -iSUFFIX, below
    grep) letters=EFGHLchilnoqsvwxefmABC with_arg=efmABC ;;
    xargs) letters=0ptxILnPs with_arg=ILnPs ;;
    readlink) letters=n ;;
    date) letters=u ;;
    mktemp) letters=dq operands=template ;;
    base64) letters=d operands=none ;;
    stat) letters=L ;;
    # GNU-only commands (macOS has shasum -a 256, no timeout, no nproc, no getent, no flock).
    sha256sum | timeout | nproc | getent | flock) letters=none ;;
    *)
        echo "bsd-guard: no rules for $tool" >&2
        exit 2
        ;;
esac

args=$*
refuse() {
    printf '%s %s: %s\n' "$tool" "$args" "$1" >>"$log"
    printf 'bsd-guard: %s: %s\n' "$tool" "$1" >&2
    exit 2
}
[ "$letters" = none ] && refuse "not installed on macOS"
n_operands=0
last=""
want_value=false
options_done=false
for a do
    if $want_value; then
        want_value=false
        continue
    fi
    case "$options_done:$a" in
        false:--) options_done=true ;;
        false:--*) refuse "long option $a (BSD $tool has none, or other ones)" ;;
        false:-?*)
            [ "$n_operands" -eq 0 ] || refuse "option $a after an operand (GNU permutes arguments, BSD does not)"
            rest=${a#-}
            while [ -n "$rest" ]; do
                c=${rest%"${rest#?}"}
                rest=${rest#?}
                if [ "$tool:$c" = sed:i ]; then
                    # BSD takes the next argument as the suffix, GNU none: only an attached
                    # suffix (-i.bak) means the same to both. Better: a temp file and mv.
                    [ -n "$rest" ] || refuse "-i without an attached suffix"
                    rest=""
                    continue
                fi
                case "$letters" in
                    *"$c"*) ;;
                    *) refuse "-$c is GNU-only or means something else to BSD $tool" ;;
                esac
                case "$with_arg" in
                    *"$c"*)
                        [ -n "$rest" ] || want_value=true
                        rest=""
                        ;;
                esac
            done
            ;;
        *)
            n_operands=$((n_operands + 1))
            last=$a
            ;;
    esac
done
case "$operands" in
    none) [ "$n_operands" -eq 0 ] || refuse "a file operand (give stdin: BSD and GNU differ)" ;;
    template)
        [ "$n_operands" -eq 1 ] || refuse "no template (BSD needs one: mktemp -d \"\${TMPDIR:-/tmp}/name.XXXXXX\")"
        case "$last" in
            *XXXXXX) ;;
            *) refuse "template $last does not end in XXXXXX" ;;
        esac
        ;;
esac
real=$(PATH=${BSD_GUARD_PATH:?} command -v "$tool") || refuse "no real $tool on BSD_GUARD_PATH"
exec "$real" "$@"
