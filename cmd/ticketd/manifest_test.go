package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// The scopes each Slack call or event of the bridge needs (Slack's method and
// event reference pages). The manifest must ask for all of them.
var neededScopes = map[string]string{
	"chat.postMessage":                "chat:write",
	"chat.update":                     "chat:write",
	"chat.postEphemeral":              "chat:write",
	"reactions.add":                   "reactions:write",
	"reaction_added":                  "reactions:read",
	"users.info":                      "users:read",
	"users.info profile.email":        "users:read.email",
	"conversations.history (public)":  "channels:history",
	"conversations.history (private)": "groups:history",
	"message.channels":                "channels:history",
	"message.groups":                  "groups:history",
	"message.im":                      "im:history",
	"files.getUploadURLExternal":      "files:write",
	"files.completeUploadExternal":    "files:write",
	"url_private_download":            "files:read",
	"/ticket":                         "commands",
}

func manifestOf(t *testing.T, args ...string) map[string]any {
	t.Helper()
	var out, errOut bytes.Buffer
	if err := run(context.Background(), append([]string{"slack-manifest"}, args...), &out, &errOut, noEnv); err != nil {
		t.Fatalf("slack-manifest %v: %v %s", args, err, errOut.String())
	}
	var m map[string]any
	if err := yaml.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatalf("manifest does not parse: %v\n%s", err, out.String())
	}
	return m
}

func dig(m map[string]any, path string) any {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func strs(v any) []string {
	var out []string
	for _, x := range v.([]any) {
		out = append(out, x.(string))
	}
	return out
}

func TestSlackManifest(t *testing.T) {
	m := manifestOf(t)
	scopes := strs(dig(m, "oauth_config.scopes.bot"))
	for use, scope := range neededScopes {
		if !slices.Contains(scopes, scope) {
			t.Errorf("manifest lacks %s, needed by %s", scope, use)
		}
	}
	if len(scopes) != len(slackBotScopes) || slices.Contains(scopes, "mpim:history") {
		t.Errorf("scopes %v", scopes)
	}
	if dig(m, "settings.socket_mode_enabled") != true || dig(m, "settings.interactivity.is_enabled") != true ||
		dig(m, "settings.event_subscriptions.request_url") != nil {
		t.Errorf("socket mode manifest: %v", m["settings"])
	}
	events := strs(dig(m, "settings.event_subscriptions.bot_events"))
	for _, ev := range []string{"message.channels", "message.groups", "message.im", "reaction_added"} {
		if !slices.Contains(events, ev) {
			t.Errorf("bot_events lacks %s", ev)
		}
	}
	cmds := dig(m, "features.slash_commands").([]any)
	if len(cmds) != 1 || cmds[0].(map[string]any)["command"] != "/ticket" {
		t.Errorf("slash commands %v", cmds)
	}

	m = manifestOf(t, "-mode", "events", "-url", "https://tickets.example.com/")
	if dig(m, "settings.socket_mode_enabled") != false ||
		dig(m, "settings.event_subscriptions.request_url") != "https://tickets.example.com/slack/events" ||
		dig(m, "settings.interactivity.request_url") != "https://tickets.example.com/slack/interactivity" ||
		dig(m, "features.slash_commands").([]any)[0].(map[string]any)["url"] != "https://tickets.example.com/slack/commands" {
		t.Errorf("events mode manifest: %v", m)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"slack-manifest", "-mode", "events"}, &out, &out, noEnv); err == nil || !strings.Contains(err.Error(), "-url") {
		t.Errorf("events mode without -url: %v", err)
	}
	p := writeFile(t, "slack: {mode: events}\n")
	if err := run(context.Background(), []string{"slack-manifest", "-config", p, "-url", "http://insecure"}, &out, &out, noEnv); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("mode from the config, http url: %v", err)
	}
}
