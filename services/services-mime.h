/* services-mime.h - the MIME tree as the security and links services
 * (svc-security.c, svc-links.c) see it, internal to ocp-services:
 *   mime-walk.c   the message loaded from the input parts, a walk over
 *                 every leaf that may replace it, and the message written
 *                 back as adapted parts
 *   mime-views.c  every reading a mail client could give one leaf
 */
#pragma once

#include "services.h"

G_BEGIN_DECLS

#define MIME_PART_MAX (64 * 1024 * 1024)

typedef struct {
  GMimeMessage *msg;
  GBytes *header;       /* the header part as lmtpd sent it, or NULL */
} MimeLoaded;

/* FALSE for an empty input (or one GMime makes no message of). */
gboolean mime_load (const ServiceInput *in, MimeLoaded *out);
/* Writes the message and hands back its adapted parts. */
gboolean mime_adapt (const MimeLoaded *l, ServiceOutput *out);
/* Decoded content of a leaf part (bounded). */
GByteArray *mime_decoded (GMimePart *part);
/* A text/plain part saying @text, to stand for a removed one. */
GMimePart *mime_notice_part (const char *text);

typedef struct {
  /* a replacement for @part, or NULL to keep it */
  GMimeObject *(*leaf) (GMimePart *part, gpointer data);
  /* TRUE to drop text outside the parts; NULL keeps it */
  gboolean (*stray) (const char *text, gpointer data);
  /* a replacement for a subtree too deep to walk; NULL keeps it */
  GMimeObject *(*too_deep) (GMimeObject *obj, gpointer data);
  gpointer data;
  gboolean changed;
} MimeVisitor;

/* Walks all of @msg; TRUE if anything was replaced or dropped. */
gboolean mime_visit_all (GMimeMessage *msg, MimeVisitor *v);

typedef struct {
  GPtrArray *contents;  /* GByteArray: distinct, non-empty */
  guint shown;          /* the first ones are what a client shows: as
                           declared, and its inline uuencoded files */
  GPtrArray *names;     /* file names the part goes by */
} MimeViews;

void mime_views_init (MimeViews *v);
void mime_views_clear (MimeViews *v);
/* Every reading of a leaf: names, content as declared, then raw. */
void mime_views_of_part (MimeViews *v, GMimePart *part);
/* @raw as it stands and under every transfer decoding. */
void mime_views_add_readings (MimeViews *v, const GByteArray *raw);

G_END_DECLS
