package main

import (
	"bytes"
	"fmt"
	"io"
	"net/url"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/ticketd/ticketd/ingest/slackin"
)

// slackBotScopes are the bot token scopes ticketd asks for, each with the
// calls or events that need it. Least privilege: nothing is listed that no
// code path uses. Left out on purpose: mpim:history (group DMs with the bot
// open no tickets), channels:read/groups:read (channels are configured by ID,
// never looked up by name; a missing membership shows as not_in_channel),
// im:write (replies go to the DM the customer opened, no conversations.open),
// metadata.message:read (only for message_metadata_* events; history returns
// metadata with the history scopes).
var slackBotScopes = []struct{ scope, why string }{
	{"chat:write", "chat.postMessage (root messages, thread lines), chat.update (root message in place), chat.postEphemeral (refusals, /ticket answers)"},
	{"reactions:write", "reactions.add/remove: the receipt on an agent's reply (email, lock, warning)"},
	{"reactions:read", "reaction_added events: white_check_mark and eyes on a root message as shortcuts"},
	{"users:read", "users.info: an agent's name and whether a user is a bot or external"},
	{"users:read.email", "users.info profile.email: link a Slack user to the agent with that address"},
	{"channels:history", "message.channels events (agents' replies, public intake channels) and conversations.history/replies (find a root by its metadata before re-posting)"},
	{"groups:history", "message.groups events and history when the agents' or an intake channel is private"},
	{"im:history", "message.im events: a direct message to the bot opens a ticket (slack.directMessages)"},
	{"files:read", "download files attached to a Slack message (url_private_download)"},
	{"files:write", "files.getUploadURLExternal/completeUploadExternal: a customer's attachments into the thread"},
	{"commands", "the /ticket slash command"},
}

// slackBotEvents are the events ticketd subscribes to (each needs the scope
// named next to it above).
var slackBotEvents = []string{"message.channels", "message.groups", "message.im", "reaction_added"}

type slackManifest struct {
	Metadata struct {
		Major int `yaml:"major_version"`
		Minor int `yaml:"minor_version"`
	} `yaml:"_metadata"`
	DisplayInformation struct {
		Name        string `yaml:"name"`
		Description string `yaml:"description"`
	} `yaml:"display_information"`
	Features struct {
		AppHome struct {
			HomeTab      bool `yaml:"home_tab_enabled"`
			MessagesTab  bool `yaml:"messages_tab_enabled"`
			MessagesRead bool `yaml:"messages_tab_read_only_enabled"`
		} `yaml:"app_home"`
		BotUser struct {
			DisplayName  string `yaml:"display_name"`
			AlwaysOnline bool   `yaml:"always_online"`
		} `yaml:"bot_user"`
		SlashCommands []slackCommand `yaml:"slash_commands"`
	} `yaml:"features"`
	OAuthConfig struct {
		Scopes struct {
			Bot []string `yaml:"bot"`
		} `yaml:"scopes"`
	} `yaml:"oauth_config"`
	Settings struct {
		EventSubscriptions struct {
			RequestURL string   `yaml:"request_url,omitempty"`
			BotEvents  []string `yaml:"bot_events"`
		} `yaml:"event_subscriptions"`
		Interactivity struct {
			Enabled    bool   `yaml:"is_enabled"`
			RequestURL string `yaml:"request_url,omitempty"`
		} `yaml:"interactivity"`
		OrgDeploy     bool `yaml:"org_deploy_enabled"`
		SocketMode    bool `yaml:"socket_mode_enabled"`
		TokenRotation bool `yaml:"token_rotation_enabled"`
	} `yaml:"settings"`
}

type slackCommand struct {
	Command      string `yaml:"command"`
	URL          string `yaml:"url,omitempty"`
	Description  string `yaml:"description"`
	UsageHint    string `yaml:"usage_hint"`
	ShouldEscape bool   `yaml:"should_escape"`
}

// buildSlackManifest is the Slack app manifest for a mode; events mode needs
// the public https base URL of the API listener.
func buildSlackManifest(mode, baseURL string) ([]byte, error) {
	var m slackManifest
	m.Metadata.Major, m.Metadata.Minor = 1, 1
	m.DisplayInformation.Name = "ticketd"
	m.DisplayInformation.Description = "Support tickets: a thread per ticket, replies and status from Slack"
	m.Features.AppHome.MessagesTab = true // customers can DM the bot (slack.directMessages)
	m.Features.BotUser.DisplayName = "ticketd"
	m.Features.BotUser.AlwaysOnline = true
	cmd := slackCommand{Command: "/ticket", Description: "Show a ticket or change its status, priority or assignee",
		UsageHint: "42 | 42 resolved | 42 priority high | 42 assign me"}
	for _, s := range slackBotScopes {
		m.OAuthConfig.Scopes.Bot = append(m.OAuthConfig.Scopes.Bot, s.scope)
	}
	m.Settings.EventSubscriptions.BotEvents = slackBotEvents
	m.Settings.Interactivity.Enabled = true
	switch mode {
	case slackModeSocket:
		m.Settings.SocketMode = true
	case slackModeEvents:
		u, err := url.Parse(baseURL)
		if baseURL == "" || err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("events mode needs -url, the public https address of ticketd's API listener, got %q", baseURL)
		}
		base := strings.TrimSuffix(baseURL, "/")
		m.Settings.EventSubscriptions.RequestURL = base + slackin.PathEvents
		m.Settings.Interactivity.RequestURL = base + slackin.PathInteractivity
		cmd.URL = base + slackin.PathCommands
	default:
		return nil, fmt.Errorf("mode must be socket or events, got %q", mode)
	}
	m.Features.SlashCommands = []slackCommand{cmd}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&m); err != nil {
		return nil, fmt.Errorf("encode the manifest: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode the manifest: %w", err)
	}
	return b.Bytes(), nil
}

func cmdSlackManifest(args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	fs := newFlags("slack-manifest", "slack-manifest [-config FILE] [-mode socket|events] [-url https://ticketd.example.com]", stderr)
	cfgPath := fs.String("config", "", "configuration file; its slack.mode is the default mode")
	mode := fs.String("mode", "", "socket or events (default: slack.mode of the configuration, socket)")
	base := fs.String("url", "", "events mode: public https base URL of the API listener (Slack posts to /slack/events, /slack/interactivity, /slack/commands)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath, getenv)
	if err != nil {
		return err
	}
	if *mode == "" {
		*mode = cfg.Slack.Mode
	}
	out, err := buildSlackManifest(*mode, *base)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# Slack app manifest for ticketd (%s mode). Create the app at\n# https://api.slack.com/apps -> Create New App -> From a manifest, paste this,\n# install it, invite the bot to slack.channel.", *mode)
	if *mode == slackModeSocket {
		fmt.Fprint(stdout, " Then create an app-level token\n# with connections:write (Basic Information) for slack.appToken.")
	}
	fmt.Fprintf(stdout, "\n%s", out)
	return nil
}
