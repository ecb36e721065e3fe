# Sourced by the setup steps: `apt_install WHAT PACKAGE...` installs Debian packages quietly,
# as root or through sudo, and shows apt's output only when something fails.

apt_install() {
    local what=$1
    shift
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if ! command -v sudo >/dev/null 2>&1; then
            echo "$what is missing and this user cannot install it: install $*" >&2
            return 1
        fi
        # sudo drops the environment, so the non-interactive frontend is passed as an argument.
        sudo=(sudo DEBIAN_FRONTEND=noninteractive)
    fi
    echo "== installing $what"
    export DEBIAN_FRONTEND=noninteractive
    local out
    # apt prints progress and debconf notes even with -qq: show them only when something fails.
    if ! out=$("${sudo[@]}" apt-get update -qq 2>&1 \
        && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" 2>&1); then
        echo "$out" >&2
        return 1
    fi
}
