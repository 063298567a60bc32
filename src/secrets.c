/*-------------------------------------------------------------------------
 *
 * secrets.c
 *	  Bearer tokens for Prometheus sources and HTTP actuators live in files
 *	  of the directory driftmirror_secrets in the data directory, one token
 *	  per file, never in the catalog.  A token is read just before it is
 *	  used; the caller wipes it (explicit_bzero) when done.  Errors name the
 *	  file, never its content.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/fd.h"

#include "secrets.h"

/*
 * DmReadSecretFile
 *		The token in $PGDATA/driftmirror_secrets/<name>, trailing white space
 *		removed, palloc'd in the current memory context.  Returns NULL and
 *		sets *error (palloc'd) if the name is not a plain file name, the file
 *		cannot be read, or it does not hold exactly one non-empty line.
 *		Does not raise errors.
 */
char *
DmReadSecretFile(const char *name, char **error)
{
	char		path[MAXPGPATH];
	char		buf[4097];
	FILE	   *f;
	size_t		n;
	char	   *tok;

	/* checked when the option was set; checked again: no paths */
	if (name[0] == '\0' || name[0] == '.' || strchr(name, '/') != NULL)
	{
		*error = pstrdup("invalid bearer_token_file name");
		return NULL;
	}
	snprintf(path, sizeof(path), "%s/driftmirror_secrets/%s", DataDir, name);
	f = AllocateFile(path, "r");
	if (f == NULL)
	{
		*error = psprintf("could not read bearer_token_file \"%s\": %m", name);
		return NULL;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	FreeFile(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' ||
					 buf[n - 1] == ' ' || buf[n - 1] == '\t'))
		buf[--n] = '\0';
	if (n == 0 || strpbrk(buf, "\r\n") != NULL)
	{
		explicit_bzero(buf, sizeof(buf));
		*error = psprintf("bearer_token_file \"%s\" must hold one non-empty line", name);
		return NULL;
	}
	tok = pstrdup(buf);
	explicit_bzero(buf, sizeof(buf));
	return tok;
}
