package main

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/ticketd/ticketd/ingest/slackin"
	"github.com/ticketd/ticketd/notify"
	"github.com/ticketd/ticketd/notify/slackout"
	"github.com/ticketd/ticketd/store"
)

// Slack modes.
const (
	slackModeSocket = "socket" // Socket Mode: ticketd connects out, no public URL needed
	slackModeEvents = "events" // the HTTP Events API: Slack posts to /slack/* on the API listener
)

// SlackConfig configures the Slack bridge: the agents' channel (issue 7) and
// customers writing in Slack (issue 8).
type SlackConfig struct {
	// Enabled turns the bridge on; the other keys are checked only then.
	Enabled bool `yaml:"enabled"`
	// Mode is socket or events.
	Mode string `yaml:"mode"`
	// BotToken (xoxb-) posts and reads; TICKETD_SLACK_BOT_TOKEN(_FILE).
	BotToken string `yaml:"botToken"`
	// AppToken (xapp-, connections:write) opens Socket Mode connections;
	// socket mode only; TICKETD_SLACK_APP_TOKEN(_FILE).
	AppToken string `yaml:"appToken"`
	// SigningSecret verifies Events API requests; events mode only;
	// TICKETD_SLACK_SIGNING_SECRET(_FILE).
	SigningSecret string `yaml:"signingSecret"`
	// APIURL is Slack's Web API base, ending in "/" (GovSlack:
	// https://slack-gov.com/api/; tests: a fake).
	APIURL string `yaml:"apiURL"`
	// Channel is the ID of the agents' channel: every ticket gets a thread there.
	Channel string `yaml:"channel"`
	// ReplyDefault says what an agent's plain reply in a ticket thread is:
	// customer (mailed to the customer) or internal (a note).
	ReplyDefault string `yaml:"replyDefault"`
	// NotePrefix: with replyDefault customer, a reply starting with it is an
	// internal note.
	NotePrefix string `yaml:"notePrefix"`
	// MaxUploadBytes is the largest attachment uploaded into a ticket's
	// thread; a larger one gets a note with its API link instead.
	MaxUploadBytes int64 `yaml:"maxUploadBytes"`
	// Delivery tunes the slack sink's delivery runner (the outbox); the keys
	// mean what email.outbound's of the same names mean.
	Delivery notify.Schedule `yaml:"delivery"`
	// IntakeChannels are channel IDs where a customer's top-level message
	// opens a ticket (issue 8).
	IntakeChannels []string `yaml:"intakeChannels"`
	// DirectMessages: a direct message to the bot opens a ticket (issue 8).
	DirectMessages bool `yaml:"directMessages"`
	// ChannelTeams maps an intake channel ID to the customer team its
	// tickets belong to (issue 8).
	ChannelTeams map[string]string `yaml:"channelTeams"`
	// IntakeCategory files tickets opened from Slack; one of tickets.categories.
	IntakeCategory string `yaml:"intakeCategory"`
}

func defaultSlackConfig() SlackConfig {
	return SlackConfig{
		Mode: slackModeSocket, APIURL: slackin.DefaultAPIURL, ReplyDefault: "customer", NotePrefix: "//",
		MaxUploadBytes: slackout.DefaultMaxUploadBytes,
		Delivery:       notify.Schedule{}.WithDefaults(),
		IntakeChannels: []string{}, DirectMessages: true, ChannelTeams: map[string]string{}, IntakeCategory: "Support",
	}
}

// applySlackEnv takes the tokens from TICKETD_SLACK_*(_FILE) when set.
func applySlackEnv(s *SlackConfig, getenv func(string) string) error {
	for _, v := range []struct {
		name string
		dst  *string
	}{
		{"TICKETD_SLACK_BOT_TOKEN", &s.BotToken},
		{"TICKETD_SLACK_APP_TOKEN", &s.AppToken},
		{"TICKETD_SLACK_SIGNING_SECRET", &s.SigningSecret},
	} {
		val, err := secretFromEnv(getenv, v.name)
		if err != nil {
			return err
		}
		if val != "" {
			*v.dst = val
		}
	}
	return nil
}

// slackChannelID is the shape of a conversation ID a bridge can post to or
// listen in: C (channels, public and private) or G (older private
// channels), then upper-case letters and digits. Names like #support are not
// IDs: Slack renames keep the ID.
var slackChannelID = regexp.MustCompile(`^[CG][A-Z0-9]{6,}$`)

// validate checks the bridge's keys when it is enabled.
func (s *SlackConfig) validate(bad func(key, format string, args ...any), line func(string), categories []string, shutdown time.Duration) {
	if !s.Enabled {
		return
	}
	switch s.Mode {
	case slackModeSocket:
		if !strings.HasPrefix(s.AppToken, "xapp-") {
			bad("slack.appToken", "socket mode needs the app-level token (xapp-..., scope connections:write; or TICKETD_SLACK_APP_TOKEN), got %s", describeToken(s.AppToken))
		}
	case slackModeEvents:
		if len(s.SigningSecret) < 16 {
			bad("slack.signingSecret", "events mode needs the app's signing secret (Basic Information page; or TICKETD_SLACK_SIGNING_SECRET)")
		}
		if s.AppToken != "" && !strings.HasPrefix(s.AppToken, "xapp-") {
			bad("slack.appToken", "must be an app-level token (xapp-...) or empty, got %s", describeToken(s.AppToken))
		}
	default:
		bad("slack.mode", "must be socket or events, got %q", s.Mode)
	}
	if !strings.HasPrefix(s.BotToken, "xoxb-") {
		bad("slack.botToken", "must be the bot token (xoxb-...; or TICKETD_SLACK_BOT_TOKEN), got %s", describeToken(s.BotToken))
	}
	if u, err := url.Parse(s.APIURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || !strings.HasSuffix(s.APIURL, "/") {
		bad("slack.apiURL", "must be an http(s) URL ending in /, like https://slack.com/api/, got %q", s.APIURL)
	}
	if !slackChannelID.MatchString(s.Channel) {
		bad("slack.channel", "must be the agents' channel ID (like C0123456789: channel details, bottom), got %q", s.Channel)
	}
	if s.ReplyDefault != "customer" && s.ReplyDefault != "internal" {
		bad("slack.replyDefault", "must be customer or internal, got %q", s.ReplyDefault)
	}
	if s.MaxUploadBytes < 1 {
		bad("slack.maxUploadBytes", "must be a positive number of bytes, got %d", s.MaxUploadBytes)
	}
	for _, l := range errLines(s.Delivery.Options(slackout.Sink).Validate()) {
		line("slack.delivery." + strings.TrimSpace(l))
	}
	if g := s.Delivery.WithDefaults().ShutdownGrace; g >= shutdown {
		bad("slack.delivery.shutdownGrace", "%s must be shorter than http.shutdownTimeout (%s), or shutdown cuts it short", g, shutdown)
	}
	if s.NotePrefix != strings.TrimSpace(s.NotePrefix) || len(s.NotePrefix) > 16 {
		bad("slack.notePrefix", "must be at most 16 characters without leading or trailing spaces, got %q", s.NotePrefix)
	}
	for i, ch := range s.IntakeChannels {
		key := fmt.Sprintf("slack.intakeChannels[%d]", i)
		switch {
		case !slackChannelID.MatchString(ch):
			bad(key, "must be a channel ID like C0123456789, got %q", ch)
		case ch == s.Channel:
			bad(key, "is the agents' channel (slack.channel); customers must not write there")
		case slices.Index(s.IntakeChannels, ch) < i:
			bad(key, "%s is listed twice", ch)
		}
	}
	keys := make([]string, 0, len(s.ChannelTeams))
	for ch := range s.ChannelTeams {
		keys = append(keys, ch)
	}
	slices.Sort(keys)
	for _, ch := range keys {
		if !slices.Contains(s.IntakeChannels, ch) {
			bad("slack.channelTeams."+ch, "must be one of slack.intakeChannels")
		}
		if strings.TrimSpace(s.ChannelTeams[ch]) == "" {
			bad("slack.channelTeams."+ch, "must name a team")
		}
		if store.ReservedTeam(s.ChannelTeams[ch]) {
			bad("slack.channelTeams."+ch, "%q is reserved for personal teams, which the store assigns", s.ChannelTeams[ch])
		}
	}
	if !slices.Contains(categories, s.IntakeCategory) {
		bad("slack.intakeCategory", "must be one of tickets.categories %v, got %q", categories, s.IntakeCategory)
	}
}

// describeToken names what a token looks like without printing it.
func describeToken(tok string) string {
	if tok == "" {
		return "nothing"
	}
	if prefix, _, ok := strings.Cut(tok, "-"); ok && len(prefix) <= 5 {
		return fmt.Sprintf("a %s- token", prefix)
	}
	return "a value of another shape"
}
