"""Token encryption at rest with a keyring taken from configuration.

The keyring is a string of Fernet keys separated by commas and/or whitespace, from the ``odoo.conf`` option
``epilot_outlook_keys`` or the ``EPILOT_OUTLOOK_KEYS`` environment variable (the Odoo side reads them and
passes the string in). The **first** key is the newest: it encrypts. Every key decrypts, so a key can be
rotated in three steps:

1. put a new key first and keep the old one after it (``NEW,OLD``) and restart;
2. re-encrypt stored tokens with :meth:`Vault.rotate` (a cron or a button on the Odoo side);
3. remove the old key.

Keys never appear in messages or logs; :attr:`Vault.key_id` is a short fingerprint for status displays.
"""
import hashlib
import logging
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from .errors import InvalidKeyError, MissingKeyError, UndecryptableError

_logger = logging.getLogger(__name__)

_KEY_SEPARATORS_RE = re.compile(r'[\s,]+')


def generate_key():
    """Return a new random Fernet key, as text to paste into the configuration.

    :rtype: str
    """
    return Fernet.generate_key().decode('ascii')


def key_fingerprint(key):
    """Return a short, non-reversible identifier of a key: the first 8 hex digits of its SHA-256.

    :param str key: A Fernet key (text).
    :rtype: str
    """
    return hashlib.sha256(key.strip().encode('ascii', 'replace')).hexdigest()[:8]


class Vault:
    """Encrypts and decrypts tokens with a keyring (newest key first).

    :param list keys: Fernet keys as text, newest first. Use :meth:`from_config` to parse configuration.
    :raise MissingKeyError: When ``keys`` is empty.
    :raise InvalidKeyError: When a key is not a valid Fernet key.
    """

    def __init__(self, keys):
        keys = [key for key in keys if key]
        if not keys:
            raise MissingKeyError(
                "No token encryption key configured: set `epilot_outlook_keys` in odoo.conf or the "
                "EPILOT_OUTLOOK_KEYS environment variable. Generate one with: python3 -c \"from "
                "cryptography.fernet import Fernet; print(Fernet.generate_key().decode())\""
            )
        fernets = []
        for position, key in enumerate(keys, start=1):
            try:
                fernets.append(Fernet(key.encode('ascii') if isinstance(key, str) else key))
            except (ValueError, TypeError, UnicodeError):
                # Say which key is wrong, never what it is.
                raise InvalidKeyError(
                    "Token encryption key #%d of %d is not a valid Fernet key (expected 44 characters of "
                    "URL-safe base64, as printed by Fernet.generate_key())." % (position, len(keys)),
                    params={'position': position, 'count': len(keys)},
                ) from None
        self._key_ids = tuple(key_fingerprint(key if isinstance(key, str) else key.decode('ascii', 'replace'))
                              for key in keys)
        self._newest = fernets[0]
        self._keyring = MultiFernet(fernets)

    @classmethod
    def from_config(cls, keys_string):
        """Build a vault from the configured keyring string.

        :param str keys_string: Keys separated by commas and/or whitespace, newest first (may be ``None``).
        :rtype: Vault
        :raise MissingKeyError: When no key is configured.
        :raise InvalidKeyError: When a key is malformed.
        """
        keys = [key for key in _KEY_SEPARATORS_RE.split((keys_string or '').strip()) if key]
        return cls(keys)

    generate_key = staticmethod(generate_key)

    # === BUSINESS METHODS === #

    @property
    def key_id(self):
        """The fingerprint of the newest key (the one that encrypts), for status displays.

        :rtype: str
        """
        return self._key_ids[0]

    @property
    def key_ids(self):
        """The fingerprints of all keys, newest first.

        :rtype: tuple
        """
        return self._key_ids

    def encrypt(self, plaintext):
        """Encrypt with the newest key.

        :param plaintext: ``bytes`` or ``str`` (encoded as UTF-8).
        :return: The Fernet token (URL-safe base64, ASCII bytes).
        :rtype: bytes
        """
        if isinstance(plaintext, str):
            plaintext = plaintext.encode('utf-8')
        return self._newest.encrypt(plaintext)

    def decrypt(self, ciphertext):
        """Decrypt with whichever key of the keyring encrypted the data.

        :param ciphertext: A Fernet token, ``bytes`` or ``str``.
        :rtype: bytes
        :raise UndecryptableError: When no key of the keyring can decrypt it (or it was altered).
        """
        return self._with_keyring(self._keyring.decrypt, ciphertext)

    def rotate(self, ciphertext):
        """Re-encrypt under the newest key (decrypting with any key of the keyring).

        :param ciphertext: A Fernet token, ``bytes`` or ``str``.
        :return: The new Fernet token.
        :rtype: bytes
        :raise UndecryptableError: When no key of the keyring can decrypt it.
        """
        return self._with_keyring(self._keyring.rotate, ciphertext)

    def can_decrypt(self, ciphertext):
        """Tell whether some key of the keyring decrypts the data (a lost key makes old data unreadable).

        :param ciphertext: A Fernet token, ``bytes`` or ``str``.
        :rtype: bool
        """
        return self._decrypts(self._keyring, ciphertext)

    def is_current(self, ciphertext):
        """Tell whether the data is already encrypted with the newest key (nothing to rotate).

        :param ciphertext: A Fernet token, ``bytes`` or ``str``.
        :rtype: bool
        """
        return self._decrypts(self._newest, ciphertext)

    def _decrypts(self, fernet, ciphertext):
        """Tell whether ``fernet`` (one key or the keyring) decrypts the data."""
        try:
            fernet.decrypt(self._as_bytes(ciphertext))
        except InvalidToken:
            return False
        return True

    def _with_keyring(self, operation, ciphertext):
        """Run a MultiFernet ``operation`` and turn its ``InvalidToken`` into a clear, keyless error."""
        try:
            return operation(self._as_bytes(ciphertext))
        except InvalidToken:
            raise UndecryptableError(
                "The data was encrypted with a key that is not in the keyring (or was altered); keyring: %s."
                % ', '.join(self._key_ids)
            ) from None

    @staticmethod
    def _as_bytes(ciphertext):
        if isinstance(ciphertext, str):
            return ciphertext.encode('ascii', 'replace')
        return bytes(ciphertext or b'')

    def __repr__(self):
        return '<Vault keys=%s>' % ','.join(self._key_ids)
