/*
 * A software FIDO authenticator, for portcullis's tests only: an OpenSSH "security key
 * provider" (the shared library named by `ssh -o SecurityKeyProvider=`, `ssh-keygen -w`,
 * `ssh-add -S`), so that `ssh-keygen -t ed25519-sk` / `-t ecdsa-sk` keys can be made and used
 * by the stock OpenSSH tools on a machine with no hardware token.
 *
 * TEST ONLY, NEVER FOR REAL KEYS: the "key handle" that OpenSSH stores in the private key file
 * IS the private key, in the clear (the raw ed25519 seed, or the P-256 key as DER). A real
 * token keeps its secret inside and hands out an opaque handle. There is no touch either: the
 * signature reports user presence exactly when OpenSSH asked for it, as a token that was
 * touched does, so a key made with `-O no-touch-required` signs without the presence bit,
 * which is what a server must refuse unless told otherwise.
 *
 * The ABI is OpenSSH's sk-api.h, version 0x000a0000 (OpenSSH 8.9 to 9.x, including 9.2p1):
 * the structures below must keep its field order and types. Built by tests/support/fido.rs
 * with `cc -shared -fPIC ... -lcrypto` against OpenSSL 3 (only its non-deprecated API).
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

/* sk-api.h: flags OpenSSH passes to enroll and sign. */
#define SK_USER_PRESENCE_REQD 0x01
#define SK_USER_VERIFICATION_REQD 0x04
#define SK_RESIDENT_KEY 0x20

/* sk-api.h: algorithms. */
#define SK_ECDSA 0x00
#define SK_ED25519 0x01

/* sk-api.h: error codes. */
#define SK_ERR_GENERAL -1
#define SK_ERR_UNSUPPORTED -2

/* sk-api.h: the API version OpenSSH 9.2 checks (its major half) before using a provider. */
#define SK_VERSION_MAJOR 0x000a0000

struct sk_enroll_response {
	uint8_t flags;
	uint8_t *public_key;
	size_t public_key_len;
	uint8_t *key_handle;
	size_t key_handle_len;
	uint8_t *signature;
	size_t signature_len;
	uint8_t *attestation_cert;
	size_t attestation_cert_len;
	uint8_t *authdata;
	size_t authdata_len;
};

struct sk_sign_response {
	uint8_t flags;
	uint32_t counter;
	uint8_t *sig_r;
	size_t sig_r_len;
	uint8_t *sig_s;
	size_t sig_s_len;
};

struct sk_resident_key {
	uint32_t alg;
	size_t slot;
	char *application;
	struct sk_enroll_response key;
	uint8_t flags;
	uint8_t *user_id;
	size_t user_id_len;
};

struct sk_option {
	char *name;
	char *value;
	uint8_t required;
};

/* The four entry points OpenSSH looks up with dlsym; everything else stays private. */
#define EXPORT __attribute__((visibility("default")))
EXPORT uint32_t sk_api_version(void);
EXPORT int sk_enroll(uint32_t alg, const uint8_t *challenge, size_t challenge_len,
    const char *application, uint8_t flags, const char *pin, struct sk_option **options,
    struct sk_enroll_response **enroll_response);
EXPORT int sk_sign(uint32_t alg, const uint8_t *data, size_t data_len, const char *application,
    const uint8_t *key_handle, size_t key_handle_len, uint8_t flags, const char *pin,
    struct sk_option **options, struct sk_sign_response **sign_response);
EXPORT int sk_load_resident_keys(const char *pin, struct sk_option **options,
    struct sk_resident_key ***rks, size_t *nrks);

/* P-256 public keys go to OpenSSH as the uncompressed point: 0x04 || X || Y. */
#define P256_POINT_LEN 65
#define ED25519_KEY_LEN 32
#define ED25519_SIG_LEN 64
#define SHA256_LEN 32

/*
 * The signature counter. A real token keeps one across uses to expose cloned keys; neither
 * OpenSSH's sshd nor portcullis checks it, so one that counts up within each process using the
 * provider (an ssh-agent signs many times) is enough.
 */
static uint32_t counter;

uint32_t
sk_api_version(void)
{
	return SK_VERSION_MAJOR;
}

/* A provider must not ignore an option OpenSSH marks as required (a device path, say). */
static int
options_ok(struct sk_option **options)
{
	size_t i;

	for (i = 0; options != NULL && options[i] != NULL; i++)
		if (options[i]->required)
			return 0;
	return 1;
}

static uint8_t *
copy_out(const uint8_t *p, size_t len)
{
	uint8_t *out = malloc(len == 0 ? 1 : len);

	if (out != NULL && len > 0)
		memcpy(out, p, len);
	return out;
}

/* A new ed25519 key: public key and key handle (the 32-byte private seed). */
static int
enroll_ed25519(struct sk_enroll_response *r)
{
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	uint8_t pub[ED25519_KEY_LEN], priv[ED25519_KEY_LEN];
	size_t pub_len = sizeof(pub), priv_len = sizeof(priv);
	int ok = 0;

	if (pkey == NULL)
		goto out;
	if (EVP_PKEY_get_raw_public_key(pkey, pub, &pub_len) != 1 || pub_len != sizeof(pub) ||
	    EVP_PKEY_get_raw_private_key(pkey, priv, &priv_len) != 1 || priv_len != sizeof(priv))
		goto out;
	r->public_key = copy_out(pub, pub_len);
	r->public_key_len = pub_len;
	r->key_handle = copy_out(priv, priv_len);
	r->key_handle_len = priv_len;
	ok = r->public_key != NULL && r->key_handle != NULL;
out:
	OPENSSL_cleanse(priv, sizeof(priv));
	EVP_PKEY_free(pkey);
	return ok;
}

/* A new P-256 key: the uncompressed point, and key handle (the private key as DER). */
static int
enroll_ecdsa(struct sk_enroll_response *r)
{
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	uint8_t pub[P256_POINT_LEN];
	size_t pub_len = 0;
	unsigned char *der = NULL;
	int der_len = 0, ok = 0;

	if (pkey == NULL)
		goto out;
	if (EVP_PKEY_get_octet_string_param(pkey, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, pub,
	    sizeof(pub), &pub_len) != 1 || pub_len != sizeof(pub) || pub[0] != 0x04)
		goto out;
	if ((der_len = i2d_PrivateKey(pkey, &der)) <= 0)
		goto out;
	r->public_key = copy_out(pub, pub_len);
	r->public_key_len = pub_len;
	r->key_handle = copy_out(der, (size_t)der_len);
	r->key_handle_len = (size_t)der_len;
	ok = r->public_key != NULL && r->key_handle != NULL;
out:
	if (der != NULL)
		OPENSSL_clear_free(der, (size_t)(der_len > 0 ? der_len : 0));
	EVP_PKEY_free(pkey);
	return ok;
}

static void
free_enroll(struct sk_enroll_response *r)
{
	if (r == NULL)
		return;
	free(r->public_key);
	if (r->key_handle != NULL)
		OPENSSL_cleanse(r->key_handle, r->key_handle_len);
	free(r->key_handle);
	free(r->signature);
	free(r->attestation_cert);
	free(r->authdata);
	free(r);
}

int
sk_enroll(uint32_t alg, const uint8_t *challenge, size_t challenge_len,
    const char *application, uint8_t flags, const char *pin, struct sk_option **options,
    struct sk_enroll_response **enroll_response)
{
	struct sk_enroll_response *r;
	int ok;

	(void)challenge;
	(void)challenge_len;
	(void)application;
	(void)pin;
	if (enroll_response == NULL)
		return SK_ERR_GENERAL;
	*enroll_response = NULL;
	/* No storage of its own: this token cannot hold resident (discoverable) keys. */
	if (!options_ok(options) || (flags & SK_RESIDENT_KEY) != 0)
		return SK_ERR_UNSUPPORTED;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return SK_ERR_GENERAL;
	/* OpenSSH keeps these in the key file and passes them back to every sk_sign. */
	r->flags = flags;
	switch (alg) {
	case SK_ED25519:
		ok = enroll_ed25519(r);
		break;
	case SK_ECDSA:
		ok = enroll_ecdsa(r);
		break;
	default:
		free_enroll(r);
		return SK_ERR_UNSUPPORTED;
	}
	/*
	 * No attestation: an empty signature and no certificate, which OpenSSH accepts (it only
	 * writes them out with `ssh-keygen -O write-attestation=`). It wants a non-NULL pointer.
	 */
	if (ok)
		ok = (r->signature = malloc(1)) != NULL;
	if (!ok) {
		free_enroll(r);
		return SK_ERR_GENERAL;
	}
	r->signature_len = 0;
	*enroll_response = r;
	return 0;
}

static int
sha256(const void *data, size_t len, uint8_t out[SHA256_LEN])
{
	unsigned int out_len = 0;

	return EVP_Digest(data, len, out, &out_len, EVP_sha256(), NULL) == 1 &&
	    out_len == SHA256_LEN;
}

/* ed25519 over the whole to-be-signed buffer; the 64-byte signature goes in sig_r. */
static int
sign_ed25519(const uint8_t *key_handle, size_t key_handle_len, const uint8_t *tbs,
    size_t tbs_len, struct sk_sign_response *r)
{
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *md = NULL;
	uint8_t sig[ED25519_SIG_LEN];
	size_t sig_len = sizeof(sig);
	int ok = 0;

	if (key_handle_len != ED25519_KEY_LEN)
		return 0;
	if ((pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, key_handle,
	    key_handle_len)) == NULL || (md = EVP_MD_CTX_new()) == NULL)
		goto out;
	if (EVP_DigestSignInit(md, NULL, NULL, NULL, pkey) != 1 ||
	    EVP_DigestSign(md, sig, &sig_len, tbs, tbs_len) != 1 || sig_len != sizeof(sig))
		goto out;
	r->sig_r = copy_out(sig, sig_len);
	r->sig_r_len = sig_len;
	ok = r->sig_r != NULL;
out:
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	return ok;
}

/* ECDSA-SHA256 over the to-be-signed buffer; r and s as big-endian integers. */
static int
sign_ecdsa(const uint8_t *key_handle, size_t key_handle_len, const uint8_t *tbs,
    size_t tbs_len, struct sk_sign_response *r)
{
	const unsigned char *p = key_handle;
	EVP_PKEY *pkey = NULL;
	EVP_MD_CTX *md = NULL;
	ECDSA_SIG *esig = NULL;
	const BIGNUM *br, *bs;
	unsigned char *der = NULL;
	const unsigned char *dp;
	size_t der_len = 0;
	int ok = 0;

	if ((pkey = d2i_AutoPrivateKey(NULL, &p, (long)key_handle_len)) == NULL ||
	    !EVP_PKEY_is_a(pkey, "EC") || (md = EVP_MD_CTX_new()) == NULL)
		goto out;
	if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, pkey) != 1 ||
	    EVP_DigestSign(md, NULL, &der_len, tbs, tbs_len) != 1 ||
	    (der = malloc(der_len)) == NULL ||
	    EVP_DigestSign(md, der, &der_len, tbs, tbs_len) != 1)
		goto out;
	dp = der;
	if ((esig = d2i_ECDSA_SIG(NULL, &dp, (long)der_len)) == NULL)
		goto out;
	ECDSA_SIG_get0(esig, &br, &bs);
	r->sig_r_len = (size_t)BN_num_bytes(br);
	r->sig_s_len = (size_t)BN_num_bytes(bs);
	if ((r->sig_r = calloc(1, r->sig_r_len + 1)) == NULL ||
	    (r->sig_s = calloc(1, r->sig_s_len + 1)) == NULL)
		goto out;
	BN_bn2bin(br, r->sig_r);
	BN_bn2bin(bs, r->sig_s);
	ok = 1;
out:
	ECDSA_SIG_free(esig);
	free(der);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(pkey);
	return ok;
}

int
sk_sign(uint32_t alg, const uint8_t *data, size_t data_len, const char *application,
    const uint8_t *key_handle, size_t key_handle_len, uint8_t flags, const char *pin,
    struct sk_option **options, struct sk_sign_response **sign_response)
{
	struct sk_sign_response *r;
	/* What a FIDO authenticator signs: SHA256(application) || flags || counter || SHA256(data). */
	uint8_t tbs[SHA256_LEN + 1 + 4 + SHA256_LEN];
	int ok;

	(void)pin;
	if (sign_response == NULL)
		return SK_ERR_GENERAL;
	*sign_response = NULL;
	if (!options_ok(options))
		return SK_ERR_UNSUPPORTED;
	if (data == NULL || application == NULL || key_handle == NULL)
		return SK_ERR_GENERAL;
	if ((r = calloc(1, sizeof(*r))) == NULL)
		return SK_ERR_GENERAL;
	/*
	 * The flags OpenSSH asked for, as the authenticator data of a touched token reports them:
	 * user presence (0x01) when touch is required, user verification (0x04) when a PIN is.
	 * Nothing else: a token's assertion carries no "resident" bit.
	 */
	r->flags = flags & (SK_USER_PRESENCE_REQD | SK_USER_VERIFICATION_REQD);
	r->counter = ++counter;
	ok = sha256(application, strlen(application), tbs) &&
	    sha256(data, data_len, tbs + SHA256_LEN + 5);
	tbs[SHA256_LEN] = r->flags;
	tbs[SHA256_LEN + 1] = (uint8_t)(r->counter >> 24);
	tbs[SHA256_LEN + 2] = (uint8_t)(r->counter >> 16);
	tbs[SHA256_LEN + 3] = (uint8_t)(r->counter >> 8);
	tbs[SHA256_LEN + 4] = (uint8_t)r->counter;
	if (ok) {
		switch (alg) {
		case SK_ED25519:
			ok = sign_ed25519(key_handle, key_handle_len, tbs, sizeof(tbs), r);
			break;
		case SK_ECDSA:
			ok = sign_ecdsa(key_handle, key_handle_len, tbs, sizeof(tbs), r);
			break;
		default:
			ok = 0;
		}
	}
	if (!ok) {
		free(r->sig_r);
		free(r->sig_s);
		free(r);
		return SK_ERR_GENERAL;
	}
	*sign_response = r;
	return 0;
}

/* No resident keys (enroll refuses them): the list is empty. */
int
sk_load_resident_keys(const char *pin, struct sk_option **options,
    struct sk_resident_key ***rks, size_t *nrks)
{
	(void)pin;
	if (rks == NULL || nrks == NULL)
		return SK_ERR_GENERAL;
	*rks = NULL;
	*nrks = 0;
	if (!options_ok(options))
		return SK_ERR_UNSUPPORTED;
	return 0;
}
