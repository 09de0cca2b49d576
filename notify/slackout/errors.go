package slackout

import (
	"errors"
	"fmt"

	"github.com/slack-go/slack"
	"github.com/ticketd/ticketd/notify"
)

// permanentErrors are Slack's answers that no retry can change: the
// channel, the token or the app's scopes must be fixed first (an operator
// requeues the dead letters after), or the message itself is refused.
var permanentErrors = map[string]bool{
	"channel_not_found":       true,
	"not_in_channel":          true,
	"is_archived":             true,
	"channel_is_archived":     true,
	"invalid_auth":            true,
	"not_authed":              true,
	"account_inactive":        true,
	"token_revoked":           true,
	"token_expired":           true,
	"no_permission":           true,
	"missing_scope":           true,
	"not_allowed_token_type":  true,
	"restricted_action":       true,
	"ekm_access_denied":       true,
	"team_access_not_granted": true,
	"msg_too_long":            true,
	"no_text":                 true,
	"invalid_blocks":          true,
	"invalid_blocks_format":   true,
	"invalid_metadata_format": true,
	"invalid_metadata_schema": true,
	"metadata_too_large":      true,
	"too_many_attachments":    true,
	"message_not_found":       true,
	"cant_update_message":     true,
	"edit_window_closed":      true,
	"thread_not_found":        true,
	"invalid_arguments":       true,
	"file_not_found":          true,
}

// classify wraps a Slack failure for the runner: wait Retry-After on a 429,
// dead-letter what no retry can fix, and leave everything else (5xx,
// network errors, unknown answers) to the runner's backoff.
func classify(op string, err error) error {
	err = fmt.Errorf("slack: %s: %w", op, err)
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return notify.RetryAfter(err, rl.RetryAfter)
	}
	if permanentErrors[slackErr(err)] {
		return notify.Permanent(err)
	}
	return err
}

// slackErr is the error string of a Slack answer with ok:false, or "".
func slackErr(err error) string {
	var se slack.SlackErrorResponse
	if errors.As(err, &se) {
		return se.Err
	}
	return ""
}

// permanent marks a failure of our own data that a retry cannot fix.
func permanent(err error) error { return notify.Permanent(err) }
