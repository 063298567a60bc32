/*-------------------------------------------------------------------------
 *
 * signature.h
 *	  HMAC-SHA256 signatures of webhook bodies (signature.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_SIGNATURE_H
#define DM_SIGNATURE_H

extern char *DmHmacSha256Signature(const char *key_file, const char *body);

#endif							/* DM_SIGNATURE_H */
