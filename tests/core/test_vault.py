"""Vault: keyring parsing, round trip, rotation, and the messages an admin sees."""
import pytest

from outlook_core import vault as vault_module
from outlook_core.errors import InvalidKeyError, MissingKeyError, UndecryptableError
from outlook_core.vault import Vault, generate_key


def test_round_trip_bytes_and_text():
    vault = Vault.from_config(Vault.generate_key())
    assert vault.decrypt(vault.encrypt(b'\x00refresh')) == b'\x00refresh'
    assert vault.decrypt(vault.encrypt('réfresh')) == 'réfresh'.encode()
    # Stored as text on the Odoo side: decrypting a str works too.
    assert vault.decrypt(vault.encrypt('rt').decode()) == b'rt'


def test_keyring_string_accepts_commas_and_whitespace():
    keys = [generate_key() for _ in range(3)]
    vault = Vault.from_config('  %s ,\n%s\t%s,' % tuple(keys))
    assert len(vault.key_ids) == 3
    assert vault.key_id == vault_module.key_fingerprint(keys[0])


def test_rotation():
    old, new = generate_key(), generate_key()
    ciphertext = Vault.from_config(old).encrypt('secret-rt')

    both = Vault.from_config('%s,%s' % (new, old))   # new key first
    assert both.decrypt(ciphertext) == b'secret-rt'
    assert not both.is_current(ciphertext)
    rotated = both.rotate(ciphertext)
    assert both.is_current(rotated)

    only_new = Vault.from_config(new)
    assert only_new.decrypt(rotated) == b'secret-rt'
    with pytest.raises(UndecryptableError):
        only_new.decrypt(ciphertext)


def test_newest_key_encrypts():
    old, new = generate_key(), generate_key()
    ciphertext = Vault.from_config('%s %s' % (new, old)).encrypt(b'x')
    assert Vault.from_config(new).decrypt(ciphertext) == b'x'
    with pytest.raises(UndecryptableError):
        Vault.from_config(old).decrypt(ciphertext)


@pytest.mark.parametrize('configured', [None, '', '  ,, \n'])
def test_missing_key_message_says_how_to_fix(configured):
    with pytest.raises(MissingKeyError) as info:
        Vault.from_config(configured)
    message = str(info.value)
    assert 'epilot_outlook_keys' in message and 'EPILOT_OUTLOOK_KEYS' in message
    assert 'Fernet.generate_key()' in message
    assert info.value.params == {}


@pytest.mark.parametrize('bad_key', ['not-a-key', 'A' * 43, generate_key()[:-2] + '!!'])
def test_bad_key_is_refused_without_echoing_it(bad_key):
    good = generate_key()
    with pytest.raises(InvalidKeyError) as info:
        Vault.from_config('%s,%s' % (good, bad_key))
    assert '#2 of 2' in str(info.value)
    assert info.value.params == {'position': 2, 'count': 2}   # the Odoo layer names the key's position
    assert bad_key not in str(info.value) and good not in str(info.value)
    assert bad_key not in repr(info.value)


def test_undecryptable_message_is_clear_and_keyless():
    key = generate_key()
    vault = Vault.from_config(key)
    with pytest.raises(UndecryptableError) as info:
        vault.decrypt(Vault.from_config(generate_key()).encrypt(b'x'))
    assert 'not in the keyring' in str(info.value)
    assert key not in str(info.value) and key not in repr(vault)
    with pytest.raises(UndecryptableError):
        vault.decrypt(b'garbage')
    with pytest.raises(UndecryptableError):
        vault.rotate('garbage')


def test_key_id_is_a_short_fingerprint_not_the_key():
    key = generate_key()
    vault = Vault.from_config(key)
    assert len(vault.key_id) == 8
    assert vault.key_id not in key
    int(vault.key_id, 16)


def test_can_decrypt_tells_a_lost_key_apart():
    old, new = Vault.generate_key(), Vault.generate_key()
    ciphertext = Vault([old]).encrypt(b'tenant')
    assert Vault([new, old]).can_decrypt(ciphertext)
    assert not Vault([new]).can_decrypt(ciphertext)
    assert not Vault([new]).can_decrypt(b'not a fernet token')
