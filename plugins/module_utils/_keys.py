# -*- coding: utf-8 -*-

# Copyright (c) Vantage maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

"""Ed25519 keys and private key files, as docs/protocol.md ("Keys and key ids") defines them.

This is private to the collection (the leading underscore): modules run on managed hosts and
cannot import the ``vantage`` Python package, so the few rules they need are re-implemented
here and kept identical to ``vantage.protocol.keys``:

- private keys are unencrypted PKCS#8 PEM files, written atomically with their final mode from
  the moment the file exists;
- ``public_key`` is standard, padded base64 of the raw 32-byte public key;
- the key id is the first 16 lowercase hex digits of SHA-256 over the raw 32-byte public key.

Nothing here ever puts private key material into an exception message.
"""

from __future__ import annotations

import base64
import binascii
import errno
import grp
import hashlib
import os
import pwd
import stat
import traceback

from ansible.module_utils.basic import missing_required_lib

CRYPTOGRAPHY_IMPORT_ERROR = None
try:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
except ImportError:
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()
    HAS_CRYPTOGRAPHY = False
else:
    HAS_CRYPTOGRAPHY = True

PUBLIC_KEY_BYTES = 32
KEY_ID_HEX_DIGITS = 16
DEFAULT_MODE = 0o600
PEM_HEADER = b"-----BEGIN PRIVATE KEY-----"
MAX_KEY_FILE_BYTES = 64 * 1024


class KeyFileError(Exception):
    """A key file cannot be used; the message names the path and never holds key material."""


def ensure_cryptography(module):
    """Fail the module with the standard message when ``cryptography`` is not importable."""
    if not HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=CRYPTOGRAPHY_IMPORT_ERROR)


# --- keys ----------------------------------------------------------------------------------------


def generate_private_key():
    """A new random Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def private_key_pem(key):
    """``key`` as unencrypted PKCS#8 PEM (bytes)."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_private_key_pem(data, path):
    """The Ed25519 private key in PKCS#8 PEM ``data`` read from ``path``; :class:`KeyFileError` if not one."""
    if not data.lstrip().startswith(PEM_HEADER):
        if data.lstrip().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----"):
            raise KeyFileError("%s: the private key is encrypted; an unencrypted PKCS#8 key is expected" % path)
        raise KeyFileError("%s: not an unencrypted PKCS#8 PEM private key (no '-----BEGIN PRIVATE KEY-----' line)" % path)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise KeyFileError("%s: the private key is encrypted; an unencrypted PKCS#8 key is expected" % path)
    except (ValueError, binascii.Error):
        raise KeyFileError("%s: the PEM data is not a valid private key" % path)
    except UnsupportedAlgorithm:
        raise KeyFileError("%s: the private key uses an algorithm this host's cryptography library does not support" % path)
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError("%s: not an Ed25519 private key (found %s)" % (path, type(key).__name__))
    return key


def public_key_raw(key):
    """The raw 32-byte public key of an Ed25519 private key."""
    return key.public_key().public_bytes(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)


def public_key_b64(key):
    """The public key of ``key`` as standard, padded base64 of its raw 32 bytes."""
    return base64.b64encode(public_key_raw(key)).decode("ascii")


def key_id_from_raw(raw):
    """The key id of a raw 32-byte public key."""
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError("a raw public key is %d bytes, got %d" % (PUBLIC_KEY_BYTES, len(raw)))
    return hashlib.sha256(raw).hexdigest()[:KEY_ID_HEX_DIGITS]


def key_id(key):
    """The key id of an Ed25519 private key."""
    return key_id_from_raw(public_key_raw(key))


def public_key_raw_from_b64(value):
    """Decode a base64 public key to its 32 raw bytes; :class:`ValueError` unless canonical.

    Needs no third-party library (used by modules that only handle public keys).
    """
    if not isinstance(value, str):
        raise ValueError("the public key must be a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise ValueError("the public key is not valid base64")
    if len(raw) != PUBLIC_KEY_BYTES:
        raise ValueError("the public key must be base64 of %d raw bytes, got %d bytes" % (PUBLIC_KEY_BYTES, len(raw)))
    if base64.b64encode(raw).decode("ascii") != value:
        raise ValueError("the public key is not canonical (standard, padded) base64")
    return raw


def key_id_from_b64(value):
    """The key id of a base64 public key (:class:`ValueError` if it is not one)."""
    return key_id_from_raw(public_key_raw_from_b64(value))


# --- options -------------------------------------------------------------------------------------


def parse_mode(value):
    """An octal mode (``'0600'``, ``'600'``, ``'0o600'`` or an integer) for a private key file.

    Raises :class:`ValueError` for anything that is not a plain octal mode, that grants any
    permission to the group or to others, that does not let the owner read the file, or that
    sets special bits.
    """
    if value is None:
        return DEFAULT_MODE
    if isinstance(value, bool):
        raise ValueError("mode must be an octal string such as '0600'")
    if isinstance(value, int):
        try:
            return _check_private_mode(value)
        except ValueError as exc:
            # YAML reads an unquoted 600 as the decimal number 600 (= 0o1130)
            raise ValueError("%s; write the mode as a quoted octal string such as '0600'" % exc)
    text = str(value).strip()
    if text.startswith(("0o", "0O")):
        text = text[2:]
    if not text or any(c not in "01234567" for c in text):
        raise ValueError("mode must be an octal string such as '0600', not %r (symbolic modes are not supported)" % (value,))
    return _check_private_mode(int(text, 8))


def _check_private_mode(mode):
    if mode < 0 or mode > 0o7777:
        raise ValueError("mode %r is out of range" % (mode,))
    if mode & 0o7000:
        raise ValueError("mode %04o sets setuid, setgid or sticky bits; a private key file needs none" % mode)
    if mode & 0o077:
        raise ValueError("mode %04o grants access to the group or to others; a private key file must be private to its owner (e.g. 0600 or 0400)" % mode)
    if not mode & stat.S_IRUSR:
        raise ValueError("mode %04o does not let the owner read the key" % mode)
    return mode


def resolve_owner(owner):
    """A user name or numeric uid → uid (``None`` stays ``None``); :class:`ValueError` if unknown."""
    if owner is None or owner == "":
        return None
    text = str(owner)
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ValueError("unknown user %r on this host (numeric uids are accepted too)" % text)


def resolve_group(group):
    """A group name or numeric gid → gid (``None`` stays ``None``); :class:`ValueError` if unknown."""
    if group is None or group == "":
        return None
    text = str(group)
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ValueError("unknown group %r on this host (numeric gids are accepted too)" % text)


# --- files ---------------------------------------------------------------------------------------


def _oserror(exc):
    text = exc.strerror or str(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        text += " (run the task as the file's owner or as root, e.g. with become: true)"
    return text


def lstat_or_none(path):
    """``os.lstat(path)`` or ``None`` when nothing is there; :class:`KeyFileError` on other errors."""
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise KeyFileError("%s: cannot inspect the key file: %s" % (path, _oserror(exc)))


class OpenKeyFile:
    """An existing key file, opened without following symbolic links.

    ``stat`` is the opened file's status, ``data`` its bytes. ``fix(mode, uid, gid)`` corrects
    permissions and ownership through the same file descriptor, so they apply to the file that
    was checked even if the path changes meanwhile. Use as a context manager.
    """

    def __init__(self, path):
        self.path = path
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            self.fd = os.open(path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise KeyFileError("%s: is a symbolic link; point path at the key file itself" % path)
            raise KeyFileError("%s: cannot open the key file: %s" % (path, _oserror(exc)))
        try:
            self.stat = os.fstat(self.fd)
            if not stat.S_ISREG(self.stat.st_mode):
                raise KeyFileError("%s: exists but is not a regular file" % path)
            if self.stat.st_size > MAX_KEY_FILE_BYTES:
                raise KeyFileError("%s: is too large (%d bytes) to be a private key file" % (path, self.stat.st_size))
            self.data = self._read()
        except BaseException:
            os.close(self.fd)
            raise

    def _read(self):
        chunks = []
        total = 0
        try:
            while True:
                chunk = os.read(self.fd, 8192)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > MAX_KEY_FILE_BYTES:
                    raise KeyFileError("%s: is too large to be a private key file" % self.path)
        except OSError as exc:
            raise KeyFileError("%s: cannot read the key file: %s" % (self.path, _oserror(exc)))
        return b"".join(chunks)

    def fix(self, mode, uid, gid):
        """Set ``mode`` (always) and owner/group (where not ``None``) on the opened file."""
        try:
            if stat.S_IMODE(self.stat.st_mode) != mode:
                os.fchmod(self.fd, mode)
            if (uid is not None and uid != self.stat.st_uid) or (gid is not None and gid != self.stat.st_gid):
                os.fchown(self.fd, -1 if uid is None else uid, -1 if gid is None else gid)
                # chown may clear bits on some systems; set the mode again to be sure
                os.fchmod(self.fd, mode)
        except OSError as exc:
            raise KeyFileError("%s: cannot set mode/ownership: %s" % (self.path, _oserror(exc)))

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
        return False


def _fsync_directory(directory):
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_key_file(path, data, mode, uid=None, gid=None, overwrite=False):
    """Write ``data`` to ``path`` atomically; mode and ownership are final before it appears.

    The temporary file is created in the target directory with ``O_CREAT | O_EXCL`` and mode
    0600 (so nobody but the writer can ever read it), given ``mode`` and ownership through its
    descriptor, written, fsync'ed and moved into place; then the directory is fsync'ed. With
    ``overwrite=False`` an existing ``path`` is never replaced (hard link, falling back to a
    checked rename where the file system has no hard links).
    """
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise KeyFileError("%s: the directory %s does not exist" % (path, directory))
    tmp = os.path.join(directory, ".%s.%s.tmp" % (os.path.basename(path), binascii.hexlify(os.urandom(6)).decode("ascii")))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(tmp, flags, 0o600)
    except OSError as exc:
        raise KeyFileError("%s: cannot create a temporary file in %s: %s" % (path, directory, _oserror(exc)))
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits; this never adds group/other bits
            if uid is not None or gid is not None:
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
                os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.rename(tmp, path)
        else:
            _move_no_clobber(tmp, path)
    except KeyFileError:
        _unlink_quietly(tmp)
        raise
    except OSError as exc:
        _unlink_quietly(tmp)
        raise KeyFileError("%s: cannot write the key file: %s" % (path, _oserror(exc)))
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _fsync_directory(directory)


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except OSError:
        pass


def _move_no_clobber(tmp, path):
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise KeyFileError("%s: was created by somebody else meanwhile; not replaced" % path)
    except OSError as exc:  # no hard links on this file system (some FUSE/overlay/SMB mounts)
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS):
            raise
        if os.path.lexists(path):
            raise KeyFileError("%s: was created by somebody else meanwhile; not replaced" % path)
        os.rename(tmp, path)
        return
    os.unlink(tmp)


def remove_file(path):
    """Remove ``path``; True if something was removed. Directories are refused."""
    st = lstat_or_none(path)
    if st is None:
        return False
    if stat.S_ISDIR(st.st_mode):
        raise KeyFileError("%s: is a directory, not a key file" % path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise KeyFileError("%s: cannot remove the key file: %s" % (path, _oserror(exc)))
    _fsync_directory(os.path.dirname(os.path.abspath(path)))
    return True
