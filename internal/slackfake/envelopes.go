package slackfake

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// Envelope types, as in Socket Mode's "type" field.
const (
	TypeEventsAPI     = "events_api"
	TypeInteractive   = "interactive"
	TypeSlashCommands = "slash_commands"
)

// VerificationToken is the deprecated token Slack still puts into payloads.
const VerificationToken = "fake-verification-token"

// Envelope is one Socket Mode message from Slack, in its wire form. The same
// payload goes over HTTP in events mode (HTTPRequest).
type Envelope struct {
	Type                   string          `json:"type"`
	EnvelopeID             string          `json:"envelope_id"`
	Payload                json.RawMessage `json:"payload"`
	AcceptsResponsePayload bool            `json:"accepts_response_payload"`
	RetryAttempt           int             `json:"retry_attempt"`
	RetryReason            string          `json:"retry_reason"`

	// Not on the wire: what the builder made, for the test's assertions.
	EventID   string `json:"-"` // events_api: the event_id
	MessageTS string `json:"-"` // MessageEvent: the new message's ts
}

// MessageSpec describes a message a human (or another bot) writes.
type MessageSpec struct {
	Channel     string   // defaults to ChannelID
	ThreadTS    string   // the root's ts for a thread reply
	User        string   // author's user id
	Text        string   //
	Files       []string // ids from AddFile
	BotID       string   // set for another app's message
	SubType     string   // e.g. "bot_message", "file_share"
	ChannelType string   // defaults from the id: C channel, G group, D im
	// Metadata is message metadata the author put on it (anyone can:
	// conversations.* return it with include_all_metadata).
	Metadata *slack.SlackMetadata
}

func (f *Fake) envelopeIDLocked() string {
	f.seq++
	return fmt.Sprintf("e%07d-fake-envelope", f.seq)
}

// EventEnvelope wraps an inner event (its "type" and fields as Slack sends
// them) into an event_callback with a fresh event_id, in an events_api envelope.
func (f *Fake) EventEnvelope(inner map[string]any) Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.eventEnvelopeLocked(inner)
}

func (f *Fake) eventEnvelopeLocked(inner map[string]any) Envelope {
	f.seq++
	eventID := fmt.Sprintf("Ev%08dFAKE", f.seq)
	payload := map[string]any{
		"token": VerificationToken, "team_id": TeamID, "api_app_id": AppID, "event": inner,
		"type": "event_callback", "event_id": eventID, "event_time": time.Now().Unix(),
		"authorizations": []map[string]any{{"enterprise_id": nil, "team_id": TeamID, "user_id": BotUserID,
			"is_bot": true, "is_enterprise_install": false}},
		"is_ext_shared_channel": false, "event_context": "4-fake-" + eventID,
	}
	b, _ := json.Marshal(payload)
	return Envelope{Type: TypeEventsAPI, EnvelopeID: f.envelopeIDLocked(), Payload: b, EventID: eventID}
}

func channelType(id string) string {
	switch {
	case strings.HasPrefix(id, "D"):
		return "im"
	case strings.HasPrefix(id, "G"):
		return "group"
	}
	return "channel"
}

// MessageEvent stores a message by a human in the fake (so conversations.*
// see it) and returns the message event envelope Slack would send for it.
// The channel is created if unknown.
func (f *Fake) MessageEvent(spec MessageSpec) Envelope {
	if spec.Channel == "" {
		spec.Channel = ChannelID
	}
	f.mu.Lock()
	ch := f.channels[spec.Channel]
	if ch == nil {
		ch = &channel{id: spec.Channel, name: strings.ToLower(spec.Channel)}
		f.channels[spec.Channel] = ch
	}
	m := &Message{Channel: ch.id, TS: f.nextTSLocked(), ThreadTS: spec.ThreadTS, User: spec.User, BotID: spec.BotID,
		Text: spec.Text, Files: spec.Files, Metadata: spec.Metadata}
	ch.msgs = append(ch.msgs, m)
	inner := f.messageEventLocked(m)
	if spec.SubType != "" {
		inner["subtype"] = spec.SubType
	} else if len(spec.Files) > 0 {
		inner["subtype"] = "file_share"
	}
	if spec.ChannelType != "" {
		inner["channel_type"] = spec.ChannelType
	}
	env := f.eventEnvelopeLocked(inner)
	env.MessageTS = m.TS
	f.mu.Unlock()
	f.notify()
	return env
}

// messageEventLocked renders a stored message as a message event.
func (f *Fake) messageEventLocked(m *Message) map[string]any {
	inner := f.wireLocked(m, false)
	delete(inner, "reply_count")
	inner["channel"] = m.Channel
	inner["event_ts"] = m.TS
	inner["channel_type"] = channelType(m.Channel)
	if m.BotID == "" {
		inner["client_msg_id"] = "fake-client-msg-" + m.TS
	}
	if m.ThreadTS != "" && m.ThreadTS != m.TS {
		if root := f.findLocked(m.Channel, m.ThreadTS); root != nil {
			inner["parent_user_id"] = root.User
		}
	}
	return inner
}

// messageEnvelopeLocked is the echo of a bot post.
func (f *Fake) messageEnvelopeLocked(m *Message) Envelope {
	env := f.eventEnvelopeLocked(f.messageEventLocked(m))
	env.MessageTS = m.TS
	return env
}

// MessageChangedEvent edits a stored message's text (as its author) and returns
// the message_changed event.
func (f *Fake) MessageChangedEvent(channelID, ts, newText string) Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.findLocked(channelID, ts)
	if m == nil {
		panic(fmt.Sprintf("slackfake: MessageChangedEvent: no message %s in %s", ts, channelID))
	}
	prev := f.wireLocked(m, false)
	m.Text, m.Edited = newText, true
	cur := f.wireLocked(m, false)
	cur["edited"] = map[string]any{"user": m.User, "ts": f.nextTSLocked()}
	return f.eventEnvelopeLocked(map[string]any{"type": "message", "subtype": "message_changed", "hidden": true,
		"channel": channelID, "ts": f.nextTSLocked(), "event_ts": f.nextTSLocked(), "channel_type": channelType(channelID),
		"message": cur, "previous_message": prev})
}

// MessageDeletedEvent removes a stored message and returns the message_deleted
// event.
func (f *Fake) MessageDeletedEvent(channelID, ts string) Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.findLocked(channelID, ts)
	if m == nil {
		panic(fmt.Sprintf("slackfake: MessageDeletedEvent: no message %s in %s", ts, channelID))
	}
	prev := f.wireLocked(m, false)
	ch := f.channels[channelID]
	for i, o := range ch.msgs {
		if o == m {
			ch.msgs = append(ch.msgs[:i:i], ch.msgs[i+1:]...)
			break
		}
	}
	now := f.nextTSLocked()
	return f.eventEnvelopeLocked(map[string]any{"type": "message", "subtype": "message_deleted", "hidden": true,
		"channel": channelID, "ts": now, "event_ts": now, "deleted_ts": ts, "channel_type": channelType(channelID),
		"previous_message": prev})
}

// ReactionAddedEvent records user's reaction on a stored message and returns the
// reaction_added event.
func (f *Fake) ReactionAddedEvent(user, reaction, channelID, ts string) Envelope {
	return f.reactionEvent("reaction_added", user, reaction, channelID, ts)
}

// ReactionRemovedEvent removes user's reaction and returns the reaction_removed
// event.
func (f *Fake) ReactionRemovedEvent(user, reaction, channelID, ts string) Envelope {
	return f.reactionEvent("reaction_removed", user, reaction, channelID, ts)
}

func (f *Fake) reactionEvent(kind, user, reaction, channelID, ts string) Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	itemUser := ""
	if m := f.findLocked(channelID, ts); m != nil {
		itemUser = m.User
		i := -1
		for j, r := range m.Reactions {
			if r.Name == reaction {
				i = j
			}
		}
		switch {
		case kind == "reaction_added" && i < 0:
			m.Reactions = append(m.Reactions, Reaction{Name: reaction, Users: []string{user}})
		case kind == "reaction_added":
			m.Reactions[i].Users = append(m.Reactions[i].Users, user)
		case i >= 0:
			users := m.Reactions[i].Users[:0:0]
			for _, u := range m.Reactions[i].Users {
				if u != user {
					users = append(users, u)
				}
			}
			m.Reactions[i].Users = users
		}
	}
	return f.eventEnvelopeLocked(map[string]any{"type": kind, "user": user, "reaction": reaction,
		"item_user": itemUser, "item": map[string]any{"type": "message", "channel": channelID, "ts": ts},
		"event_ts": f.nextTSLocked()})
}

// Action is one element the user clicked or chose in a block_actions payload.
type Action struct {
	ActionID string
	BlockID  string
	Type     string // "button" (Value) or "static_select" (Value is the selected option's)
	Value    string
}

func (f *Fake) userWireLocked(id string) map[string]any {
	u, ok := f.users[id]
	if !ok {
		u = User{ID: id, TeamID: TeamID, Name: strings.ToLower(id)}
	}
	return map[string]any{"id": u.ID, "username": u.Name, "name": u.Name, "team_id": u.TeamID}
}

// BlockActionEnvelope is an interactive envelope for a user acting on an element
// of a stored message (the ticket's root message).
func (f *Fake) BlockActionEnvelope(user, channelID, messageTS string, a Action) Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	action := map[string]any{"action_id": a.ActionID, "block_id": a.BlockID, "type": a.Type,
		"action_ts": f.nextTSLocked()}
	if a.Type == "static_select" {
		action["selected_option"] = map[string]any{"text": map[string]any{"type": "plain_text", "text": a.Value},
			"value": a.Value}
	} else {
		action["value"] = a.Value
		action["text"] = map[string]any{"type": "plain_text", "text": a.Value}
	}
	chName := strings.ToLower(channelID)
	if ch := f.channels[channelID]; ch != nil {
		chName = ch.name
	}
	var msg map[string]any
	if m := f.findLocked(channelID, messageTS); m != nil {
		msg = f.wireLocked(m, false)
	}
	f.seq++
	payload := map[string]any{
		"type": "block_actions", "user": f.userWireLocked(user), "api_app_id": AppID, "token": VerificationToken,
		"container":  map[string]any{"type": "message", "message_ts": messageTS, "channel_id": channelID, "is_ephemeral": false},
		"trigger_id": fmt.Sprintf("%d.fake.trigger", f.seq), "team": map[string]any{"id": TeamID, "domain": TeamDomain},
		"is_enterprise_install": false, "channel": map[string]any{"id": channelID, "name": chName},
		"message": msg, "state": map[string]any{"values": map[string]any{}},
		"response_url": fmt.Sprintf("%s/response/%d", f.URL(), f.seq), "actions": []any{action},
	}
	b, _ := json.Marshal(payload)
	return Envelope{Type: TypeInteractive, EnvelopeID: f.envelopeIDLocked(), Payload: b, AcceptsResponsePayload: false}
}

// SlashCommandEnvelope is a slash_commands envelope: user typed command text in
// a channel (e.g. "/ticket", "42 resolved").
func (f *Fake) SlashCommandEnvelope(user, channelID, command, text string) Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := f.userWireLocked(user)
	chName := strings.ToLower(channelID)
	if ch := f.channels[channelID]; ch != nil {
		chName = ch.name
	}
	f.seq++
	payload := map[string]any{
		"token": VerificationToken, "team_id": TeamID, "team_domain": TeamDomain, "channel_id": channelID,
		"channel_name": chName, "user_id": user, "user_name": u["name"], "command": command, "text": text,
		"api_app_id": AppID, "is_enterprise_install": false,
		"response_url": fmt.Sprintf("%s/commands/%d", f.URL(), f.seq), "trigger_id": fmt.Sprintf("%d.fake.trigger", f.seq),
	}
	b, _ := json.Marshal(payload)
	return Envelope{Type: TypeSlashCommands, EnvelopeID: f.envelopeIDLocked(), Payload: b, AcceptsResponsePayload: true}
}

// URLVerificationBody is the body of Slack's url_verification request (events mode).
func URLVerificationBody(challenge string) []byte {
	b, _ := json.Marshal(map[string]string{"token": VerificationToken, "challenge": challenge, "type": "url_verification"})
	return b
}

// HTTPBody is how an envelope's payload travels in events mode: the path it is
// posted to, its content type and body.
func (e Envelope) HTTPBody() (path, contentType string, body []byte) {
	switch e.Type {
	case TypeInteractive:
		return "/slack/interactivity", "application/x-www-form-urlencoded",
			[]byte(url.Values{"payload": {string(e.Payload)}}.Encode())
	case TypeSlashCommands:
		var fields map[string]any
		_ = json.Unmarshal(e.Payload, &fields)
		form := url.Values{}
		for k, v := range fields {
			form.Set(k, fmt.Sprint(v))
		}
		return "/slack/commands", "application/x-www-form-urlencoded", []byte(form.Encode())
	}
	return "/slack/events", "application/json", e.Payload
}

// Signature is Slack's X-Slack-Signature for body sent at timestamp: "v0=" and
// the hex HMAC-SHA256 of "v0:timestamp:body" under the signing secret.
func Signature(secret string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "v0:%d:", timestamp)
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// HTTPRequest builds the events-mode request Slack would send for the envelope
// to baseURL (e.g. the daemon's API listener), signed with secret at the given
// time; a redelivery (RetryAttempt > 0) carries X-Slack-Retry-Num/-Reason.
func (e Envelope) HTTPRequest(baseURL, secret string, at time.Time) *http.Request {
	path, ctype, body := e.HTTPBody()
	return SignedRequest(baseURL+path, ctype, body, secret, at, e.RetryAttempt, e.RetryReason)
}

// SignedRequest builds a POST signed as Slack signs it.
func SignedRequest(target, contentType string, body []byte, secret string, at time.Time, retryNum int, retryReason string) *http.Request {
	req, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		panic(fmt.Sprintf("slackfake: request to %q: %v", target, err))
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "Slackbot 1.0 (+https://api.slack.com/robots)")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(at.Unix(), 10))
	req.Header.Set("X-Slack-Signature", Signature(secret, at.Unix(), body))
	if retryNum > 0 {
		req.Header.Set("X-Slack-Retry-Num", strconv.Itoa(retryNum))
		req.Header.Set("X-Slack-Retry-Reason", retryReason)
	}
	return req
}
