/*-------------------------------------------------------------------------
 *
 * secrets.h
 *	  Reading bearer tokens from $PGDATA/driftmirror_secrets/.
 *
 *-------------------------------------------------------------------------
 */
#ifndef DM_SECRETS_H
#define DM_SECRETS_H

extern char *DmReadSecretFile(const char *name, char **error);

#endif							/* DM_SECRETS_H */
