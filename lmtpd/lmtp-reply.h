/* lmtp-reply.h - every reply text lmtpd sends, named in one place.
 *
 * Macros, not variables, so that they stay string literals: the ones with
 * a conversion are printf formats checked by the compiler where they are
 * used.  A text's bytes on the wire are part of the protocol the tests
 * and the MTAs' logs see: change one only on purpose.
 */
#pragma once

/* greeting and session end (%s: the configured hostname) */
#define LMTP_REPLY_GREETING "220 %s LMTP opes-lmtpd ready"
#define LMTP_REPLY_BYE "221 2.0.0 %s Closing connection"
#define LMTP_REPLY_TOO_MANY_ERRORS "421 4.7.0 %s Too many errors, closing connection"
#define LMTP_REPLY_DATA_TIMEOUT "421 4.4.2 %s Timeout waiting for data, closing connection"
#define LMTP_REPLY_IDLE_TIMEOUT "421 4.4.2 %s Idle timeout, closing connection"
#define LMTP_REPLY_SHUTTING_DOWN "421 4.3.2 %s Service shutting down, closing connection"
#define LMTP_REPLY_LOST_SYNC "421 4.5.0 %s Closing connection"
/* refused at accept (%s: hostname, then why), with its own line end */
#define LMTP_REPLY_REFUSED "421 4.3.2 %s %s, try again later\r\n"

/* generic */
#define LMTP_REPLY_OK "250 2.0.0 OK"
#define LMTP_REPLY_OK_FORWARD "250 2.0.0 Ok"
#define LMTP_REPLY_TEMP_FAILURE "451 4.3.0 Temporary internal error"
#define LMTP_REPLY_UNKNOWN_COMMAND "500 5.5.1 Unknown command"
#define LMTP_REPLY_USE_LHLO "500 5.5.1 This is LMTP: use LHLO"
#define LMTP_REPLY_LINE_TOO_LONG "500 5.5.2 Line too long"
#define LMTP_REPLY_BAD_CHARACTERS "500 5.5.2 Invalid characters in command"
#define LMTP_REPLY_SYNTAX "501 5.5.4 %s"
#define LMTP_REPLY_HELP "214 2.0.0 Commands: LHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP"
#define LMTP_REPLY_VRFY "252 2.3.3 Try RCPT instead"
#define LMTP_REPLY_VRFY_SYNTAX "501 5.5.4 Syntax: VRFY address"
#define LMTP_REPLY_RSET_SYNTAX "501 5.5.4 RSET takes no arguments"

/* LHLO and its capability lines */
#define LMTP_REPLY_LHLO_SYNTAX "501 5.5.4 Syntax: LHLO hostname"
#define LMTP_REPLY_LHLO_FIRST "250-%s"
#define LMTP_REPLY_LHLO_PIPELINING "250-PIPELINING"
#define LMTP_REPLY_LHLO_ENHANCEDSTATUSCODES "250-ENHANCEDSTATUSCODES"
#define LMTP_REPLY_LHLO_8BITMIME "250-8BITMIME"
#define LMTP_REPLY_LHLO_CHUNKING "250-CHUNKING"
#define LMTP_REPLY_LHLO_BINARYMIME "250-BINARYMIME"
#define LMTP_REPLY_LHLO_SIZE "250-SIZE %" G_GUINT64_FORMAT
#define LMTP_REPLY_LHLO_XFORWARD "250-XFORWARD NAME ADDR PROTO HELO SOURCE IDENT PORT"
#define LMTP_REPLY_LHLO_XCLIENT "250-XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT"
#define LMTP_REPLY_LHLO_STARTTLS "250-STARTTLS"
#define LMTP_REPLY_LHLO_LAST "250 SMTPUTF8"

/* MAIL */
#define LMTP_REPLY_MAIL_OK "250 2.1.0 OK"
#define LMTP_REPLY_LHLO_NEEDED "503 5.5.1 Send LHLO first"
#define LMTP_REPLY_NESTED_MAIL "503 5.5.1 Nested MAIL command"
#define LMTP_REPLY_BAD_SENDER "%u %s Invalid sender address: %s"
#define LMTP_REPLY_BAD_SIZE "501 5.5.4 Invalid SIZE parameter"
#define LMTP_REPLY_SIZE_EXCEEDED "552 5.3.4 Message size exceeds fixed maximum message size"
#define LMTP_REPLY_BAD_BODY "501 5.5.4 Invalid BODY parameter"
#define LMTP_REPLY_BAD_SMTPUTF8 "501 5.5.4 SMTPUTF8 takes no value"
#define LMTP_REPLY_BAD_RET "501 5.5.4 Invalid RET parameter"
#define LMTP_REPLY_BAD_ENVID "501 5.5.4 Invalid ENVID parameter"
#define LMTP_REPLY_UNSUPPORTED_PARAM "555 5.5.4 Unsupported parameter"

/* RCPT */
#define LMTP_REPLY_RCPT_OK "250 2.1.5 OK"
#define LMTP_REPLY_MAIL_NEEDED "503 5.5.1 MAIL needed first"
#define LMTP_REPLY_RCPT_AFTER_BDAT "503 5.5.1 RCPT not allowed after BDAT"
#define LMTP_REPLY_UNSUPPORTED_PARAM_NAMED "555 5.5.4 Unsupported parameter %s"
#define LMTP_REPLY_BAD_PARAM_NAMED "501 5.5.4 Invalid %s parameter"
#define LMTP_REPLY_TOO_MANY_RCPTS "452 4.5.3 Too many recipients"
#define LMTP_REPLY_BAD_RCPT "%u %s Invalid recipient address: %s"
#define LMTP_REPLY_EMPTY_RCPT "501 5.1.3 Empty recipient address"

/* DATA and BDAT */
#define LMTP_REPLY_NO_RCPTS "503 5.5.1 No valid recipients"
#define LMTP_REPLY_DATA_SYNTAX "501 5.5.4 DATA takes no arguments"
#define LMTP_REPLY_DATA_BINARYMIME "503 5.5.1 DATA cannot be used with BODY=BINARYMIME"
#define LMTP_REPLY_DATA_AFTER_BDAT "503 5.5.1 DATA not allowed after BDAT"
#define LMTP_REPLY_DATA_GO "354 Start mail input; end with <CRLF>.<CRLF>"
#define LMTP_REPLY_BDAT_SYNTAX "501 5.5.4 Syntax: BDAT size [LAST]"
#define LMTP_REPLY_BDAT_OK "250 2.0.0 %" G_GUINT64_FORMAT " octets received"
/* as a code, a DSN and a text: also logged per recipient */
#define LMTP_STATUS_TOO_BIG 552, "5.3.4", "Message too big for system"
#define LMTP_REPLY_TOO_BIG "552 5.3.4 Message too big for system"
#define LMTP_STATUS_DATA_LINE_TOO_LONG 500, "5.5.2", "Message line too long"

/* a recipient's result: code, DSN, text, and for a delivery the transaction */
#define LMTP_REPLY_STATUS "%u %s %s"
#define LMTP_REPLY_DELIVERED "%u %s %s id=%s"

/* XFORWARD, XCLIENT */
#define LMTP_REPLY_NOT_AUTHORIZED "550 5.7.0 Error: insufficient authorization"
#define LMTP_REPLY_IN_TRANSACTION "503 5.5.1 Error: MAIL transaction in progress"
#define LMTP_REPLY_ATTR_SYNTAX "501 5.5.4 Syntax: attribute=value..."
#define LMTP_REPLY_ATTR_NAME "501 5.5.4 Bad attribute name"
#define LMTP_REPLY_ATTR_VALUE "501 5.5.4 Bad attribute value"
#define LMTP_REPLY_ATTR_ADDRESS "501 5.5.4 Bad address"

/* STARTTLS */
#define LMTP_REPLY_TLS_GO "220 2.0.0 Ready to start TLS"
#define LMTP_REPLY_TLS_UNCONFIGURED "502 5.5.1 STARTTLS is not configured"
#define LMTP_REPLY_TLS_SYNTAX "501 5.5.4 Syntax: STARTTLS"
#define LMTP_REPLY_TLS_ACTIVE "503 5.5.1 TLS is already active"
#define LMTP_REPLY_TLS_IN_TRANSACTION "503 5.5.1 STARTTLS not allowed in a transaction"
