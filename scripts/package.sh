#!/usr/bin/env bash
# Builds and checks Lethe's packages. Everything it writes goes to dist/ (or --dist DIR).
#
#   scripts/package.sh deb [--profile release|dev]   release binary → dist/lethe_VERSION_ARCH.deb,
#                                                    then its contents, control fields, desktop
#                                                    entry and AppStream metainfo are checked
#   scripts/package.sh appimage [--profile P]        AppDir in dist/Lethe.AppDir; the AppImage
#                                                    itself where appimagetool is on PATH
#   scripts/package.sh container                    the headless image of packaging/Containerfile
#                                                    (tagged lethe) from dist/'s .deb, with podman,
#                                                    buildah or docker, whichever is installed
#   scripts/package.sh install-test DEB [--chroot DIR] [--screenshot PNG]
#                                                    installs DEB with apt (on this machine, or in
#                                                    a fresh Debian chroot made by debootstrap),
#                                                    runs it from the installed path, purges it and
#                                                    checks nothing but the user's workspace is left
#
# Needs: cargo and cargo-deb (`cargo install cargo-deb`) for deb and appimage; dpkg-dev,
# desktop-file-utils and appstream (Debian packages) for the checks; root and debootstrap for
# install-test. The dev profile is for quick checks only (CI packages the binary its tests built).
set -euo pipefail
cd "$(dirname "$0")/.."

APP_ID=io.github.lethe.Lethe
dist=dist
profile=release

die() { echo "package.sh: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is not installed ($2)"; }

# Where cargo puts the binary of $profile (honours CARGO_TARGET_DIR).
binary_path() {
    local dir=${CARGO_TARGET_DIR:-target}
    local sub=$profile
    [ "$profile" = dev ] && sub=debug
    echo "$dir/$sub/lethe"
}

build_deb() {
    need cargo-deb "cargo install cargo-deb"
    need dpkg-deb "Debian's dpkg"
    mkdir -p "$dist"
    local args=(--output "$dist" --profile "$profile")
    # A dev binary keeps its line tables; the package is then only a test package.
    cargo deb "${args[@]}" >&2
    local deb
    deb=$(ls -t "$dist"/lethe_*.deb | head -n 1)
    check_deb "$deb"
    echo "$deb"
}

# The files a working package must contain, and the fields apt and menus rely on.
check_deb() {
    local deb=$1
    need desktop-file-validate "Debian package desktop-file-utils"
    need appstreamcli "Debian package appstream"
    local listing
    listing=$(dpkg-deb --contents "$deb" | awk '{print $6}')
    local expected=(
        ./usr/bin/lethe
        "./usr/share/applications/$APP_ID.desktop"
        "./usr/share/metainfo/$APP_ID.metainfo.xml"
        "./usr/share/icons/hicolor/scalable/apps/$APP_ID.svg"
        ./usr/share/doc/lethe/copyright
        ./usr/share/doc/lethe/README.md
        ./usr/share/doc/lethe/examples/recipes/forget-star-vit.toml
    )
    for size in 32 48 64 128 256 512; do
        expected+=("./usr/share/icons/hicolor/${size}x${size}/apps/$APP_ID.png")
    done
    for path in "${expected[@]}"; do
        grep -qxF "$path" <<<"$listing" || die "$deb lacks $path"
    done
    local depends
    depends=$(dpkg-deb --field "$deb" Depends)
    for lib in libc6 libvulkan1 libxkbcommon-x11-0 libwayland-client0; do
        grep -q "$lib" <<<"$depends" || die "$deb: Depends lacks $lib (has: $depends)"
    done
    local unpacked
    unpacked=$(mktemp -d)
    dpkg-deb --extract "$deb" "$unpacked"
    desktop-file-validate "$unpacked/usr/share/applications/$APP_ID.desktop"
    appstreamcli validate --no-net --explain "$unpacked/usr/share/metainfo/$APP_ID.metainfo.xml" >&2
    local version
    version=$("$unpacked/usr/bin/lethe" --version)
    rm -rf "$unpacked"
    echo "checked $deb: $(grep -c . <<<"$listing") entries, $version, Depends: $depends" >&2
}

build_appimage() {
    need cargo "rustup"
    cargo build --profile "$profile" >&2
    local appdir=$dist/Lethe.AppDir
    rm -rf "$appdir"
    install -Dm755 "$(binary_path)" "$appdir/usr/bin/lethe"
    install -Dm755 packaging/appimage/AppRun "$appdir/AppRun"
    install -Dm644 "packaging/$APP_ID.desktop" "$appdir/usr/share/applications/$APP_ID.desktop"
    install -Dm644 "packaging/$APP_ID.metainfo.xml" "$appdir/usr/share/metainfo/$APP_ID.appdata.xml"
    install -Dm644 assets/icons/lethe.svg "$appdir/usr/share/icons/hicolor/scalable/apps/$APP_ID.svg"
    install -Dm644 assets/icons/lethe-256.png "$appdir/usr/share/icons/hicolor/256x256/apps/$APP_ID.png"
    # The AppImage runtime reads the desktop entry and icon from the AppDir's top level.
    ln -s "usr/share/applications/$APP_ID.desktop" "$appdir/$APP_ID.desktop"
    ln -s "usr/share/icons/hicolor/256x256/apps/$APP_ID.png" "$appdir/$APP_ID.png"
    ln -s "$APP_ID.png" "$appdir/.DirIcon"
    "$appdir/AppRun" --version >&2
    if command -v appimagetool >/dev/null 2>&1; then
        ARCH=$(uname -m) appimagetool "$appdir" "$dist/Lethe-$(uname -m).AppImage" >&2
        echo "$dist/Lethe-$(uname -m).AppImage"
    else
        echo "AppDir ready in $appdir; appimagetool is not on PATH, so no AppImage was built" >&2
        echo "$appdir"
    fi
}

build_container() {
    local tool
    for tool in podman buildah docker ""; do
        [ -n "$tool" ] && command -v "$tool" >/dev/null 2>&1 && break
    done
    [ -n "$tool" ] || die "no container tool: install podman or buildah (Debian packages)"
    ls dist/lethe_*.deb >/dev/null 2>&1 || die "no dist/lethe_*.deb: run scripts/package.sh deb first"
    [ "$(ls dist/lethe_*.deb | wc -l)" = 1 ] || die "several dist/lethe_*.deb: keep the one to ship"
    "$tool" build -f packaging/Containerfile -t lethe . >&2
    echo "built the image lethe with $tool" >&2
}

# Installs, runs and removes the package where this script runs (as root).
install_test_here() {
    local deb=$1 screenshot=${2:-}
    [ "$(id -u)" = 0 ] || die "install-test installs a package: run it as root (or with --chroot)"
    if [ -n "$screenshot" ]; then
        need xvfb-run "Debian packages xvfb and xauth"
        need import "Debian package imagemagick"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "$(realpath "$deb")" >/dev/null
    local lethe
    lethe=$(command -v lethe) || die "lethe is not on PATH after installing $deb"
    [ "$lethe" = /usr/bin/lethe ] || die "lethe resolves to $lethe, not the installed /usr/bin/lethe"
    local files
    files=$(dpkg -L lethe)
    desktop-file-validate "/usr/share/applications/$APP_ID.desktop" 2>/dev/null ||
        echo "(desktop-file-validate is not installed here; the deb step validated the entry)"

    # A user of the installed package: a home of their own, no cargo, no source tree.
    local home
    home=$(mktemp -d)
    (
        cd "$home"
        export HOME=$home PATH=/usr/local/bin:/usr/bin:/bin && unset XDG_CACHE_HOME XDG_CONFIG_HOME XDG_DATA_HOME LETHE_HOME
        lethe --version
        lethe eval --dataset shapes:colors --device cpu
        if [ -n "$screenshot" ]; then
            # The window under a virtual display; the first launch unpacks the demo model.
            xvfb-run --auto-servernum --server-args="-screen 0 1400x900x24" bash -c '
                lethe & app=$!
                sleep 40
                import -window root "$0"
                kill $app; wait $app || true' "$home/screenshot.png"
        fi
    )
    [ -z "$screenshot" ] || cp "$home/screenshot.png" "$screenshot"
    [ -d "$home/.cache/lethe" ] || die "the first run left no model cache in ~/.cache/lethe"

    apt-get purge -y -qq lethe >/dev/null
    local left=()
    while IFS= read -r path; do
        # Every file, and every folder of lethe's own (shared ones like hicolor/ stay).
        if [ -f "$path" ] || { [ -d "$path" ] && [[ $path == */lethe* ]]; }; then
            left+=("$path")
        fi
    done <<<"$files"
    [ ${#left[@]} = 0 ] || die "files left after purging lethe: ${left[*]}"
    [ -d "$home/.cache/lethe" ] || die "purging lethe removed the user's cache"
    # The window's run made a workspace; it is the user's and stays.
    [ -z "$screenshot" ] || [ -f "$home/.local/share/lethe/egui.ron" ] ||
        die "the app left no workspace in ~/.local/share/lethe, or purging removed it"
    echo "installed, ran from /usr/bin/lethe and purged $(basename "$deb"): no packaged file left; the user's files in ~/.cache/lethe${screenshot:+ and ~/.local/share/lethe} stay" >&2
    rm -rf "$home"
}

# The same test in a fresh minimal Debian (bookworm) made by debootstrap: nothing of this
# machine's (no cargo, no libraries installed by hand) can make it pass.
install_test_chroot() {
    local deb=$1 root=$2 screenshot=${3:-}
    need debootstrap "Debian package debootstrap"
    if [ ! -x "$root/usr/bin/apt-get" ]; then
        debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >&2
    fi
    mkdir -p "$root/tmp/lethe-test"
    cp "$deb" "$0" "$root/tmp/lethe-test/"
    mount --bind /proc "$root/proc"
    mount --bind /dev "$root/dev"
    trap 'umount "$root/proc" "$root/dev"' RETURN
    local extra=()
    [ -z "$screenshot" ] || extra=(--screenshot /tmp/lethe-test/screenshot.png)
    chroot "$root" bash -c "
        export DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin
        apt-get update -qq
        apt-get install -y -qq desktop-file-utils ${screenshot:+xvfb xauth imagemagick} >/dev/null
        bash /tmp/lethe-test/package.sh install-test /tmp/lethe-test/$(basename "$deb") ${extra[*]}"
    [ -z "$screenshot" ] || cp "$root/tmp/lethe-test/screenshot.png" "$screenshot"
}

command=${1:-}
[ -n "$command" ] || die "say what to build: deb, appimage, container or install-test (see the top of this script)"
shift
deb= chroot_dir= screenshot=
while [ $# -gt 0 ]; do
    case $1 in
        --profile) profile=${2:?--profile needs release or dev}; shift 2 ;;
        --dist) dist=${2:?--dist needs a folder}; shift 2 ;;
        --chroot) chroot_dir=${2:?--chroot needs a folder}; shift 2 ;;
        --screenshot) screenshot=$(realpath -m "${2:?--screenshot needs a PNG path}"); shift 2 ;;
        -*) die "unknown option $1 (allowed: --profile, --dist, --chroot, --screenshot)" ;;
        *) deb=$1; shift ;;
    esac
done
case $profile in release | dev) ;; *) die "--profile is release or dev, not $profile" ;; esac

case $command in
    deb) build_deb ;;
    appimage) build_appimage ;;
    container) build_container ;;
    install-test)
        [ -f "$deb" ] || die "install-test needs a .deb file, not '${deb}'"
        if [ -n "$chroot_dir" ]; then
            install_test_chroot "$deb" "$chroot_dir" "$screenshot"
        else
            install_test_here "$deb" "$screenshot"
        fi
        ;;
    *) die "unknown command $command (allowed: deb, appimage, container, install-test)" ;;
esac
