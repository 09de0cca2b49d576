package slackfake

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/slack-go/slack"
)

// maxBody bounds what the fake reads of one request (Slack's own limits are
// far lower for everything but uploads).
const maxBody = 32 << 20

// Message is a message in a channel of the fake, posted by the bot through the
// Web API or added by a test as a human's message (MessageEvent).
type Message struct {
	Channel   string
	TS        string
	ThreadTS  string // "" for a root message; the root's ts for a reply
	User      string
	BotID     string // set on the bot's messages
	Text      string
	Blocks    json.RawMessage // as posted ("" when none)
	Metadata  *slack.SlackMetadata
	Reactions []Reaction
	Files     []string // file ids
	Edited    bool     // chat.update changed it
	Updates   int      // how many times chat.update changed it
}

// Reaction is one emoji on a message and who added it, in order.
type Reaction struct {
	Name  string
	Users []string
}

// Ephemeral is a message posted with chat.postEphemeral (only User sees it).
type Ephemeral struct {
	Channel  string
	User     string
	TS       string
	ThreadTS string
	Text     string
	Blocks   json.RawMessage
}

// File is a file known to the fake: uploaded through the external-upload flow,
// or added by a test (AddFile) to attach to a human's message.
type File struct {
	ID       string
	Name     string
	Title    string
	Mimetype string
	Length   int    // announced in files.getUploadURLExternal
	Content  []byte // what arrived at the upload URL (or was added)
	Uploaded bool   // content arrived
	Shared   bool   // files.completeUploadExternal shared it into a channel
	Channel  string
	ThreadTS string
}

type channel struct {
	id   string
	name string
	msgs []*Message // in ts order (ts only grows)
}

func (m *Message) clone() Message {
	c := *m
	c.Reactions = nil
	for _, r := range m.Reactions {
		c.Reactions = append(c.Reactions, Reaction{Name: r.Name, Users: slices.Clone(r.Users)})
	}
	c.Files = slices.Clone(m.Files)
	c.Blocks = slices.Clone(m.Blocks)
	if m.Metadata != nil {
		md := *m.Metadata
		c.Metadata = &md
	}
	return c
}

// Messages returns the channel's messages, roots and replies, oldest first.
func (f *Fake) Messages(channelID string) []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch := f.channels[channelID]
	if ch == nil {
		return nil
	}
	out := make([]Message, 0, len(ch.msgs))
	for _, m := range ch.msgs {
		out = append(out, m.clone())
	}
	return out
}

// Roots returns the channel's root messages (no replies), oldest first.
func (f *Fake) Roots(channelID string) []Message {
	var out []Message
	for _, m := range f.Messages(channelID) {
		if m.ThreadTS == "" || m.ThreadTS == m.TS {
			out = append(out, m)
		}
	}
	return out
}

// Replies returns the replies in the thread under rootTS, oldest first
// (without the root).
func (f *Fake) Replies(channelID, rootTS string) []Message {
	var out []Message
	for _, m := range f.Messages(channelID) {
		if m.ThreadTS == rootTS && m.TS != rootTS {
			out = append(out, m)
		}
	}
	return out
}

// Message returns one message by channel and ts.
func (f *Fake) Message(channelID, ts string) (Message, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := f.findLocked(channelID, ts); m != nil {
		return m.clone(), true
	}
	return Message{}, false
}

// Ephemerals returns the ephemeral messages posted so far, in order.
func (f *Fake) Ephemerals() []Ephemeral {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.ephemera)
}

// File returns a file by id.
func (f *Fake) File(id string) (File, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fl := f.files[id]; fl != nil {
		c := *fl
		c.Content = slices.Clone(fl.Content)
		return c, true
	}
	return File{}, false
}

// AddFile adds a file as if a human had uploaded it (for a message event's
// files); it is downloadable at its url_private_download with the bot token.
func (f *Fake) AddFile(name, mimetype string, content []byte) File {
	f.mu.Lock()
	f.seq++
	fl := &File{ID: fmt.Sprintf("F%07d", f.seq), Name: name, Title: name, Mimetype: mimetype,
		Length: len(content), Content: slices.Clone(content), Uploaded: true}
	f.files[fl.ID] = fl
	c := *fl
	f.mu.Unlock()
	f.notify()
	return c
}

func (f *Fake) findLocked(channelID, ts string) *Message {
	ch := f.channels[channelID]
	if ch == nil {
		return nil
	}
	for _, m := range ch.msgs {
		if m.TS == ts {
			return m
		}
	}
	return nil
}

// nextTSLocked returns a new message ts, greater than every earlier one, in
// Slack's "seconds.microseconds" form.
func (f *Fake) nextTSLocked() string {
	f.seq++
	v := f.tsBase + int64(f.seq)
	return fmt.Sprintf("%d.%06d", v/1e6, v%1e6)
}

// tsValue turns a ts into microseconds for comparisons; a malformed ts is 0.
func tsValue(ts string) int64 {
	sec, frac, _ := strings.Cut(ts, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return 0
	}
	frac = (frac + "000000")[:6]
	us, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return 0
	}
	return s*1e6 + us
}

func (f *Fake) serveAPI(w http.ResponseWriter, r *http.Request) {
	method := r.PathValue("method")
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	params := url.Values{}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		var m map[string]any
		if len(body) > 0 && json.Unmarshal(body, &m) != nil {
			f.answer(w, Call{Method: method, Body: body}, nil, "invalid_json")
			return
		}
		for k, v := range m {
			if s, ok := v.(string); ok {
				params.Set(k, s)
			} else {
				b, _ := json.Marshal(v)
				params.Set(k, string(b))
			}
		}
	} else if len(body) > 0 {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			f.answer(w, Call{Method: method, Body: body}, nil, "invalid_form_data")
			return
		}
		params = form
	}
	for k, vs := range r.URL.Query() {
		if !params.Has(k) {
			params[k] = vs
		}
	}
	token := params.Get("token")
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		token = bearer
	}
	call := Call{Method: method, Params: params, Token: token, Body: body}
	if f.applyKnob(w, r, &call) {
		return
	}
	resp, errStr := f.dispatch(method, params, token)
	f.answer(w, call, resp, errStr)
}

// applyKnob answers the request as the next knob of its method says, if any.
func (f *Fake) applyKnob(w http.ResponseWriter, r *http.Request, call *Call) bool {
	k, ok := f.takeKnob(call.Method)
	if !ok {
		return false
	}
	switch k.kind {
	case "error":
		f.answer(w, *call, nil, k.slackErr)
	case "429":
		call.Status = k.status
		f.record(*call)
		w.Header().Set("Retry-After", strconv.Itoa(k.retryAfter))
		w.WriteHeader(k.status)
	case "5xx":
		call.Status = k.status
		f.record(*call)
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(k.status)
		_, _ = io.WriteString(w, "<html><body>Slack is having trouble</body></html>")
	case "drop":
		f.record(*call) // before the cut, as answer records before answering
		if hj, ok := w.(http.Hijacker); ok {
			if conn, _, err := hj.Hijack(); err == nil {
				_ = conn.Close()
			}
		}
	}
	return true
}

// answer writes Slack's JSON answer (HTTP 200 either way, as Slack does) and
// records the call.
func (f *Fake) answer(w http.ResponseWriter, call Call, resp map[string]any, errStr string) {
	if errStr != "" {
		resp = map[string]any{"ok": false, "error": errStr}
	} else {
		if resp == nil {
			resp = map[string]any{}
		}
		resp["ok"] = true
	}
	// Recorded before the answer leaves: a client that has its answer
	// finds the call in the record.
	call.Status = http.StatusOK
	call.Error = errStr
	f.record(call)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(resp)
}

func (f *Fake) dispatch(method string, p url.Values, token string) (map[string]any, string) {
	if method == "apps.connections.open" {
		switch token {
		case AppToken:
		case "":
			return nil, "not_authed"
		case BotToken:
			return nil, "not_allowed_token_type"
		default:
			return nil, "invalid_auth"
		}
		return f.connectionsOpen()
	}
	switch token {
	case BotToken:
	case "":
		return nil, "not_authed"
	case AppToken:
		return nil, "not_allowed_token_type"
	default:
		return nil, "invalid_auth"
	}
	methods := map[string]func(url.Values) (map[string]any, string){
		"auth.test":                    f.authTestLocked,
		"chat.postMessage":             f.postMessageLocked,
		"chat.update":                  f.updateLocked,
		"chat.postEphemeral":           f.postEphemeralLocked,
		"chat.getPermalink":            f.permalinkLocked,
		"reactions.add":                func(p url.Values) (map[string]any, string) { return f.reactLocked(p, true) },
		"reactions.remove":             func(p url.Values) (map[string]any, string) { return f.reactLocked(p, false) },
		"users.info":                   f.userInfoLocked,
		"conversations.history":        f.historyLocked,
		"conversations.replies":        f.repliesLocked,
		"files.getUploadURLExternal":   f.uploadURLLocked,
		"files.completeUploadExternal": f.completeUploadLocked,
	}
	handle, ok := methods[method]
	if !ok {
		return nil, "unknown_method"
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return handle(p)
}

func (f *Fake) authTestLocked(url.Values) (map[string]any, string) {
	return map[string]any{"url": "https://" + TeamDomain + ".slack.com/", "team": "Fake", "user": BotName,
		"team_id": TeamID, "user_id": BotUserID, "bot_id": BotID}, ""
}

func (f *Fake) postMessageLocked(p url.Values) (map[string]any, string) {
	ch := f.channels[p.Get("channel")]
	if ch == nil {
		return nil, "channel_not_found"
	}
	m := &Message{Channel: ch.id, User: BotUserID, BotID: BotID, Text: p.Get("text"), ThreadTS: p.Get("thread_ts")}
	if e := f.setContentLocked(m, p); e != "" {
		return nil, e
	}
	if m.Text == "" && len(m.Blocks) == 0 {
		return nil, "no_text"
	}
	if m.ThreadTS != "" && f.findLocked(ch.id, m.ThreadTS) == nil {
		return nil, "thread_not_found"
	}
	m.TS = f.nextTSLocked()
	ch.msgs = append(ch.msgs, m)
	if f.echo {
		env := f.messageEnvelopeLocked(m)
		go func() { _ = f.Send(env) }()
	}
	return map[string]any{"channel": ch.id, "ts": m.TS, "message": f.wireLocked(m, true)}, ""
}

// setContentLocked applies text, blocks and metadata from a post or update,
// checking what Slack checks.
func (f *Fake) setContentLocked(m *Message, p url.Values) string {
	if len(p.Get("text")) > 40000 {
		return "msg_too_long"
	}
	if b := p.Get("blocks"); b != "" {
		if e := checkBlocks([]byte(b)); e != "" {
			return e
		}
		m.Blocks = json.RawMessage(b)
	}
	if md := p.Get("metadata"); md != "" {
		var meta slack.SlackMetadata
		if json.Unmarshal([]byte(md), &meta) != nil || meta.EventType == "" {
			return "invalid_metadata_format"
		}
		m.Metadata = &meta
	}
	return ""
}

// checkBlocks enforces the Block Kit limits a ticket message can run into:
// 50 blocks, section text 3000 characters, 10 fields of 2000, header 150, 25
// actions elements, 10 context elements, block_id 255.
func checkBlocks(raw []byte) string {
	var blocks []struct {
		Type    string `json:"type"`
		BlockID string `json:"block_id"`
		Text    *struct {
			Text string `json:"text"`
		} `json:"text"`
		Fields []struct {
			Text string `json:"text"`
		} `json:"fields"`
		Elements []json.RawMessage `json:"elements"`
	}
	if json.Unmarshal(raw, &blocks) != nil {
		return "invalid_blocks_format"
	}
	if len(blocks) > 50 {
		return "invalid_blocks"
	}
	for _, b := range blocks {
		if b.Type == "" || len(b.BlockID) > 255 {
			return "invalid_blocks"
		}
		runes := func(s string) int { return len([]rune(s)) }
		switch b.Type {
		case "section":
			if b.Text != nil && (runes(b.Text.Text) > 3000 || b.Text.Text == "") {
				return "invalid_blocks"
			}
			if b.Text == nil && len(b.Fields) == 0 || len(b.Fields) > 10 {
				return "invalid_blocks"
			}
			for _, fl := range b.Fields {
				if runes(fl.Text) > 2000 {
					return "invalid_blocks"
				}
			}
		case "header":
			if b.Text == nil || runes(b.Text.Text) > 150 {
				return "invalid_blocks"
			}
		case "actions":
			if len(b.Elements) == 0 || len(b.Elements) > 25 {
				return "invalid_blocks"
			}
		case "context":
			if len(b.Elements) == 0 || len(b.Elements) > 10 {
				return "invalid_blocks"
			}
		}
	}
	return ""
}

func (f *Fake) updateLocked(p url.Values) (map[string]any, string) {
	if f.channels[p.Get("channel")] == nil {
		return nil, "channel_not_found"
	}
	m := f.findLocked(p.Get("channel"), p.Get("ts"))
	if m == nil {
		return nil, "message_not_found"
	}
	if m.BotID != BotID {
		return nil, "cant_update_message"
	}
	upd := *m
	upd.Text = p.Get("text")
	if e := f.setContentLocked(&upd, p); e != "" {
		return nil, e
	}
	if upd.Text == "" && len(upd.Blocks) == 0 {
		return nil, "no_text"
	}
	upd.Edited = true
	upd.Updates++
	*m = upd
	return map[string]any{"channel": m.Channel, "ts": m.TS, "text": m.Text, "message": f.wireLocked(m, true)}, ""
}

func (f *Fake) postEphemeralLocked(p url.Values) (map[string]any, string) {
	ch := f.channels[p.Get("channel")]
	if ch == nil {
		return nil, "channel_not_found"
	}
	if _, ok := f.users[p.Get("user")]; !ok {
		return nil, "user_not_in_channel"
	}
	e := Ephemeral{Channel: ch.id, User: p.Get("user"), ThreadTS: p.Get("thread_ts"), Text: p.Get("text")}
	if b := p.Get("blocks"); b != "" {
		if msg := checkBlocks([]byte(b)); msg != "" {
			return nil, msg
		}
		e.Blocks = json.RawMessage(b)
	}
	if e.Text == "" && len(e.Blocks) == 0 {
		return nil, "no_text"
	}
	e.TS = f.nextTSLocked()
	f.ephemera = append(f.ephemera, e)
	return map[string]any{"message_ts": e.TS}, ""
}

func (f *Fake) permalinkLocked(p url.Values) (map[string]any, string) {
	m := f.findLocked(p.Get("channel"), p.Get("message_ts"))
	if m == nil {
		return nil, "message_not_found"
	}
	link := fmt.Sprintf("https://%s.slack.com/archives/%s/p%s", TeamDomain, m.Channel, strings.ReplaceAll(m.TS, ".", ""))
	if m.ThreadTS != "" && m.ThreadTS != m.TS {
		link += "?thread_ts=" + m.ThreadTS + "&cid=" + m.Channel
	}
	return map[string]any{"channel": m.Channel, "permalink": link}, ""
}

func (f *Fake) reactLocked(p url.Values, add bool) (map[string]any, string) {
	name := p.Get("name")
	if name == "" {
		return nil, "invalid_name"
	}
	if f.channels[p.Get("channel")] == nil {
		return nil, "channel_not_found"
	}
	m := f.findLocked(p.Get("channel"), p.Get("timestamp"))
	if m == nil {
		return nil, "message_not_found"
	}
	i := slices.IndexFunc(m.Reactions, func(r Reaction) bool { return r.Name == name })
	has := i >= 0 && slices.Contains(m.Reactions[i].Users, BotUserID)
	switch {
	case add && has:
		return nil, "already_reacted"
	case add && i >= 0:
		m.Reactions[i].Users = append(m.Reactions[i].Users, BotUserID)
	case add:
		m.Reactions = append(m.Reactions, Reaction{Name: name, Users: []string{BotUserID}})
	case !has:
		return nil, "no_reaction"
	default:
		m.Reactions[i].Users = slices.DeleteFunc(m.Reactions[i].Users, func(u string) bool { return u == BotUserID })
		if len(m.Reactions[i].Users) == 0 {
			m.Reactions = slices.Delete(m.Reactions, i, i+1)
		}
	}
	return nil, ""
}

func (f *Fake) userInfoLocked(p url.Values) (map[string]any, string) {
	u, ok := f.users[p.Get("user")]
	if !ok {
		return nil, "user_not_found"
	}
	profile := map[string]any{"real_name": u.RealName, "display_name": u.Name, "team": u.TeamID}
	if u.Email != "" {
		profile["email"] = u.Email
	}
	if u.BotID != "" {
		profile["bot_id"] = u.BotID
	}
	return map[string]any{"user": map[string]any{
		"id": u.ID, "team_id": u.TeamID, "name": u.Name, "real_name": u.RealName, "deleted": u.Deleted,
		"is_bot": u.IsBot, "is_app_user": false, "is_restricted": false, "is_ultra_restricted": false,
		"is_stranger": u.TeamID != TeamID, "profile": profile,
	}}, ""
}

// wireLocked renders a message as Slack's API does.
func (f *Fake) wireLocked(m *Message, withMetadata bool) map[string]any {
	w := map[string]any{"type": "message", "ts": m.TS, "text": m.Text, "user": m.User, "team": TeamID}
	if m.ThreadTS != "" {
		w["thread_ts"] = m.ThreadTS
	}
	if m.BotID != "" {
		w["bot_id"] = m.BotID
		w["app_id"] = AppID
	}
	if len(m.Blocks) > 0 {
		w["blocks"] = m.Blocks
	}
	if withMetadata && m.Metadata != nil {
		w["metadata"] = m.Metadata
	}
	if m.Edited {
		w["edited"] = map[string]any{"user": m.User, "ts": m.TS}
	}
	if len(m.Reactions) > 0 {
		var rs []map[string]any
		for _, r := range m.Reactions {
			rs = append(rs, map[string]any{"name": r.Name, "users": r.Users, "count": len(r.Users)})
		}
		w["reactions"] = rs
	}
	if len(m.Files) > 0 {
		var fs []map[string]any
		for _, id := range m.Files {
			if fl := f.files[id]; fl != nil {
				fs = append(fs, f.fileWire(fl, m.User))
			}
		}
		w["files"] = fs
	}
	if m.ThreadTS == "" || m.ThreadTS == m.TS {
		n := 0
		for _, o := range f.channels[m.Channel].msgs {
			if o.ThreadTS == m.TS && o.TS != m.TS {
				n++
			}
		}
		if n > 0 {
			w["reply_count"] = n
		}
	}
	return w
}

func (f *Fake) fileWire(fl *File, user string) map[string]any {
	dl := f.URL() + "/files/" + fl.ID + "/" + url.PathEscape(fl.Name)
	return map[string]any{"id": fl.ID, "name": fl.Name, "title": fl.Title, "mimetype": fl.Mimetype,
		"size": len(fl.Content), "user": user, "url_private": dl, "url_private_download": dl, "mode": "hosted"}
}

// page picks up to limit messages of msgs (already in answer order) that pass
// the oldest/latest window, starting after the cursor.
func page(msgs []*Message, p url.Values, newestFirst bool) (out []*Message, next string, e string) {
	limit := 100
	if l := p.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return nil, "", "invalid_limit"
		}
		if n > 0 {
			limit = min(n, 999)
		}
	}
	inclusive := p.Get("inclusive") == "1" || p.Get("inclusive") == "true"
	var oldest, latest int64 = 0, 1 << 62
	if s := p.Get("oldest"); s != "" {
		oldest = tsValue(s)
	}
	if s := p.Get("latest"); s != "" {
		latest = tsValue(s)
	}
	var after int64 = -1
	if c := p.Get("cursor"); c != "" {
		b, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return nil, "", "invalid_cursor"
		}
		after = tsValue(string(b))
	}
	for _, m := range msgs {
		v := tsValue(m.TS)
		if inclusive && (v < oldest || v > latest) || !inclusive && (v <= oldest || v >= latest) {
			continue
		}
		if after >= 0 && (newestFirst && v >= after || !newestFirst && v <= after) {
			continue
		}
		if len(out) == limit {
			next = base64.StdEncoding.EncodeToString([]byte(out[len(out)-1].TS))
			break
		}
		out = append(out, m)
	}
	return out, next, ""
}

func (f *Fake) historyLocked(p url.Values) (map[string]any, string) {
	ch := f.channels[p.Get("channel")]
	if ch == nil {
		return nil, "channel_not_found"
	}
	var roots []*Message
	for i := len(ch.msgs) - 1; i >= 0; i-- {
		if m := ch.msgs[i]; m.ThreadTS == "" || m.ThreadTS == m.TS {
			roots = append(roots, m)
		}
	}
	return f.pageAnswerLocked(roots, p, true)
}

func (f *Fake) repliesLocked(p url.Values) (map[string]any, string) {
	ch := f.channels[p.Get("channel")]
	if ch == nil {
		return nil, "channel_not_found"
	}
	m := f.findLocked(ch.id, p.Get("ts"))
	if m == nil {
		return nil, "thread_not_found"
	}
	root := m.TS
	if m.ThreadTS != "" {
		root = m.ThreadTS
	}
	var thread []*Message
	for _, o := range ch.msgs {
		if o.TS == root || o.ThreadTS == root {
			thread = append(thread, o)
		}
	}
	return f.pageAnswerLocked(thread, p, false)
}

func (f *Fake) pageAnswerLocked(msgs []*Message, p url.Values, newestFirst bool) (map[string]any, string) {
	got, next, e := page(msgs, p, newestFirst)
	if e != "" {
		return nil, e
	}
	meta := p.Get("include_all_metadata") == "1" || p.Get("include_all_metadata") == "true"
	wire := []map[string]any{}
	for _, m := range got {
		wire = append(wire, f.wireLocked(m, meta))
	}
	return map[string]any{"messages": wire, "has_more": next != "",
		"response_metadata": map[string]any{"next_cursor": next}}, ""
}

func (f *Fake) uploadURLLocked(p url.Values) (map[string]any, string) {
	n, err := strconv.Atoi(p.Get("length"))
	if p.Get("filename") == "" || err != nil || n <= 0 {
		return nil, "invalid_arguments"
	}
	f.seq++
	fl := &File{ID: fmt.Sprintf("F%07d", f.seq), Name: p.Get("filename"), Title: p.Get("filename"), Length: n}
	f.files[fl.ID] = fl
	return map[string]any{"upload_url": f.URL() + "/upload/" + fl.ID, "file_id": fl.ID}, ""
}

func (f *Fake) completeUploadLocked(p url.Values) (map[string]any, string) {
	var summaries []slack.FileSummary
	if json.Unmarshal([]byte(p.Get("files")), &summaries) != nil || len(summaries) == 0 {
		return nil, "invalid_arguments"
	}
	chID := p.Get("channel_id")
	if chID == "" {
		chID, _, _ = strings.Cut(p.Get("channels"), ",")
	}
	var ch *channel
	if chID != "" {
		if ch = f.channels[chID]; ch == nil {
			return nil, "channel_not_found"
		}
	}
	ids := []string{}
	for _, s := range summaries {
		fl := f.files[s.ID]
		if fl == nil || !fl.Uploaded {
			return nil, "file_not_found"
		}
		ids = append(ids, s.ID)
	}
	out := []map[string]any{}
	for _, s := range summaries {
		fl := f.files[s.ID]
		if s.Title != "" {
			fl.Title = s.Title
		}
		if ch != nil {
			fl.Shared, fl.Channel, fl.ThreadTS = true, ch.id, p.Get("thread_ts")
		}
		out = append(out, map[string]any{"id": fl.ID, "title": fl.Title})
	}
	if ch != nil {
		m := &Message{Channel: ch.id, TS: f.nextTSLocked(), ThreadTS: p.Get("thread_ts"), User: BotUserID,
			BotID: BotID, Text: p.Get("initial_comment"), Files: ids}
		ch.msgs = append(ch.msgs, m)
	}
	return map[string]any{"files": out}, ""
}

// serveUpload is the upload URL of the external-upload flow: a multipart POST
// with the content in the "file" field.
func (f *Fake) serveUpload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	call := Call{Method: UploadMethod, Params: url.Values{"file_id": {id}}}
	if bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		call.Token = bearer
	}
	if f.applyKnob(w, r, &call) {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	file, hdr, err := r.FormFile("file")
	if err != nil {
		call.Status = http.StatusBadRequest
		f.record(call)
		http.Error(w, "no file", http.StatusBadRequest)
		return
	}
	content, err := io.ReadAll(file)
	if err != nil {
		call.Status = http.StatusBadRequest
		f.record(call)
		http.Error(w, "short file", http.StatusBadRequest)
		return
	}
	call.Params.Set("filename", hdr.Filename)
	call.Body = content
	f.mu.Lock()
	fl := f.files[id]
	if fl != nil {
		fl.Content, fl.Uploaded = content, true
	}
	f.mu.Unlock()
	if fl == nil {
		call.Status = http.StatusNotFound
		f.record(call)
		http.NotFound(w, r)
		return
	}
	call.Status = http.StatusOK
	f.record(call)
	_, _ = fmt.Fprintf(w, "OK - %d", len(content))
}

// serveFileDownload serves url_private_download, to the bot token only.
func (f *Fake) serveFileDownload(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+BotToken {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	fl, ok := f.File(r.PathValue("id"))
	if !ok || !fl.Uploaded {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", fl.Mimetype)
	_, _ = w.Write(fl.Content)
}
