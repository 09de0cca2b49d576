package email

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// corpusCase is the expected outcome of parsing one testdata/*.eml file.
// Strings are compared exactly; Text* lists are substrings that must be
// present in (or absent from) Message.Text.
type corpusCase struct {
	file       string
	maxAttach  int64 // ParseOptions.MaxAttachmentBytes; 0 = default
	wantErr    bool
	subject    string
	fromName   string
	fromAddr   string
	messageID  string // "-" means expect empty
	text       string // exact Text when set
	textHas    []string
	textLacks  []string
	fullHas    []string
	auto       string
	attach     int
	warn       string // substring of some Warning; "" = expect none
	anyWarning bool   // some warning expected, text not pinned
}

var corpus = []corpusCase{
	// Charsets: subject, display name and body in each charset.
	{file: "charset_utf8.eml", subject: "Réservation annulée – remboursement ?", fromName: "Élodie Dubois", fromAddr: "elodie@example.fr",
		text: "Bonjour,\n\nma réservation a été annulée, où est mon remboursement ?\n\nMerci,\nÉlodie"},
	{file: "charset_iso8859-1.eml", subject: "Rückerstattung für Bestellung 4711", fromName: "Jürgen Müller", fromAddr: "juergen@example.de",
		textHas: []string{"Rückerstattung für meine Bestellung", "Grüße"}},
	{file: "charset_iso8859-2.eml", subject: "Reklamacja zamówienia", fromName: "Łukasz Żółć", fromAddr: "lukasz@example.pl",
		textHas: []string{"Dzień dobry", "zamówienie nie dotarło", "Łukasz Żółć"}},
	{file: "charset_iso8859-15.eml", subject: "Facture à 15 € - cœur du problème", fromName: "Zoë Œuvray", fromAddr: "zoe@example.fr",
		textHas: []string{"15 € au lieu de 12 €", "Le cœur du problème"}},
	{file: "charset_windows-1250.eml", subject: "Objednávka č. 1234 – reklamace", fromName: "Jiří Novák", fromAddr: "jiri@example.cz",
		textHas: []string{"zboží přišlo poškozené. Žádám o výměnu."}},
	{file: "charset_windows-1251.eml", subject: "Вопрос по счёту", fromName: "Иван Петров", fromAddr: "ivan@example.ru",
		textHas: []string{"У меня вопрос по счёту №42"}},
	{file: "charset_windows-1252.eml", subject: "Invoice “overdue” – please check", fromName: "Seán O’Brien", fromAddr: "sean@example.ie",
		textHas: []string{"“overdue” but I paid €120 last week — see"}},
	{file: "charset_iso-2022-jp.eml", subject: "お問い合わせ", fromName: "山田太郎", fromAddr: "taro@example.jp",
		text: "お世話になっております。\n注文番号１２３４の件でお問い合わせします。\n\n山田太郎"},
	{file: "charset_gb2312.eml", subject: "订单问题", fromName: "王伟", fromAddr: "wei@example.cn",
		textHas: []string{"我的订单还没有到，请帮忙查一下。"}},
	{file: "charset_gbk.eml", subject: "退款申请", fromName: "李娜", fromAddr: "na@example.cn",
		textHas: []string{"我想申请退款，商品有瑕疵。"}},
	{file: "charset_koi8-r.eml", subject: "Проблема с доступом", fromName: "Ольга Смирнова", fromAddr: "olga@example.ru",
		textHas: []string{"Не могу войти в аккаунт после смены пароля."}},
	{file: "charset_shift_jis.eml", subject: "請求書について", fromName: "佐藤花子", fromAddr: "hanako@example.jp",
		textHas: []string{"請求書の金額が違います。"}},
	{file: "charset_euc-kr.eml", subject: "배송 문의", fromName: "김민수", fromAddr: "minsu@example.kr",
		textHas: []string{"주문한 상품이 아직 배송되지 않았습니다."}},
	{file: "charset_unknown.eml", subject: "Qapla' order", fromAddr: "kirk@example.org",
		text: "Hello, my order na\uFFFDve \uFFFD arrived broken.", warn: `unknown charset "x-klingon"`},
	{file: "headers_8bit.eml", subject: "Información del pedido", fromName: "José García", fromAddr: "jose@example.es",
		text: "¿Dónde está mi pedido?"},

	// HTML and multipart/alternative.
	{file: "html_only.eml", subject: "App problems", fromAddr: "anna@example.com",
		textHas: []string{"Hello support,\n\nI have two problems:\nfirst line\nsecond line",
			"- The app crashes & closes\n- Login fails",
			"See the status page (https://status.example.com/incident/42) or https://example.com.",
			"Café <tag> €5"},
		textLacks: []string{"alert", "color: red", "ignored title", "&amp;", "(https://example.com)"}},
	{file: "alternative.eml", subject: "Plain wins", fromAddr: "ben@example.com", text: "The plain version."},
	{file: "missing_message_id.eml", subject: "No id here", fromAddr: "carla@example.com", messageID: "-",
		text: "A mail without Message-ID."},

	// Attachments.
	{file: "attachment.eml", subject: "Invoice attached", fromAddr: "dora@example.com", attach: 2,
		text: "Please find the invoice and my notes attached."},
	{file: "huge_attachment.eml", maxAttach: 1024, subject: "Big log file", fromAddr: "eve@example.com", attach: 1,
		textHas: []string{"Log attached"}, warn: `attachment "server.log" (8000 bytes) over the 1024 byte limit`},
	{file: "inline_image.eml", subject: "Screenshot of the error", fromName: "Frank Miller", fromAddr: "frank@example.com", attach: 1,
		messageID: "<8F3A1B2C-1111-4C3D-9E8F-ABCDEF012345@example.com>",
		text:      "Here is the screenshot:\n\n[image: screenshot.png]\n\nIt happens every time."},

	// Machine mail.
	{file: "auto_rfc3834.eml", subject: "Out of office: Re: [#1042] Your request", fromAddr: "grace@example.com", auto: AutoSubmittedReplied,
		textHas: []string{"out of the office"}},
	{file: "auto_exchange_oof.eml", subject: "Automatic reply: [#1042] Your request", fromAddr: "henry@contoso.com", auto: AutoXSuppress,
		textHas: []string{"I'm away until Monday."}},
	{file: "auto_xautoreply.eml", subject: "Автоответ: Re: [№1042]", fromAddr: "ivy@example.ru", auto: AutoXAutoreply, text: "Я в отпуске."},
	{file: "auto_precedence_bulk.eml", subject: "Our January newsletter", fromName: "Example News", fromAddr: "news@news.example.com", auto: AutoPrecedenceBulk,
		text: "New features this month."},
	{file: "list_id_only.eml", subject: "[users] Cannot export data", fromAddr: "jack@example.org", auto: "",
		text: "Export to CSV fails with error 500. Can support help?"},
	{file: "bounce_dsn.eml", subject: "Undelivered Mail Returned to Sender", fromName: "Mail Delivery System", fromAddr: "MAILER-DAEMON@mail.ticketd.test",
		auto: AutoBounceReport, attach: 2, textHas: []string{"550 5.1.1 User unknown"}},

	// Replies: only the new content stays in Text.
	{file: "reply_apple.eml", subject: "Re: [#1042] Your request", fromName: "Kate Bell", fromAddr: "kate@example.com",
		text: "Thanks, that fixed it! I can log in again.", fullHas: []string{"Sent from my iPhone", "> please reset your password"}},
	{file: "reply_outlook.eml", subject: "RE: [#1043] Export", fromAddr: "mark@contoso.com",
		text:      "Hi team,\n\nthe export still fails for the March report.\n\nBest regards\nMark",
		messageID: "<AM9PR02MB5555D1C1A1B2C3D4E5F6A7B8C9@AM9PR02MB5555.eurprd02.prod.outlook.com>",
		fullHas:   []string{"we deployed a fix"}},
	{file: "reply_outlook_original.eml", subject: "RE: [#1044] Password", fromName: "Nora Quinn", fromAddr: "nora@example.com",
		text: "The new password works, thank you.\n\nNora", messageID: "<000001db6347$1a2b3c4d$4e5f6a7b$@example.com>"},
	{file: "reply_gmail.eml", subject: "Re: [#1045] Refund", fromName: "Olivia Park", fromAddr: "olivia@gmail.com",
		text: "Yes, order 5521 is the one. Please refund it.\n\nOlivia", textLacks: []string{"wrote", "which order"}},
	{file: "reply_gmail_html_only.eml", subject: "Re: [#1045] Refund", fromAddr: "olivia@gmail.com",
		text: "Yes, order 5521 is the one. Please refund it.\nOlivia", fullHas: []string{"which order do you mean?"}},
	{file: "reply_german.eml", subject: "Re: [#1046] Kündigung", fromName: "Paul Müller", fromAddr: "paul@example.de",
		text:    "Hallo,\n\nbitte kündigen Sie meinen Vertrag zum Monatsende.\n\nViele Grüße\nPaul",
		fullHas: []string{"-- \nPaul Müller", "Am 09.01.25 um 17:03 schrieb Support:"}},
	{file: "reply_german_outlook.eml", subject: "AW: [#1049] Lieferung", fromAddr: "anja@example.de",
		text: "Danke, die Lieferung ist angekommen."},
	{file: "reply_french.eml", subject: "Re: [#1047] Accès", fromAddr: "quentin@example.fr", text: "Merci, l'accès fonctionne maintenant."},
	{file: "reply_spanish.eml", subject: "Re: [#1048] Factura", fromName: "Rosa Díaz", fromAddr: "rosa@example.es",
		text: "Gracias, ya recibí la factura corregida."},
	{file: "reply_inline.eml", subject: "Re: [#1050] Questions", fromAddr: "sam@example.net", text: "Version 3.2.1.\n\nDebian 12."},
	{file: "quote_only.eml", subject: "Fwd: old", fromAddr: "tom@example.net",
		text: "> The whole body is a quote.\n> Nothing new was written."},

	// Headers.
	{file: "headers_messy.eml", subject: "Re: [#1051] Drücken und Ziehen", fromAddr: "uma@example.com", text: "Body."},
	{file: "from_broken.eml", subject: "Broken from", fromName: "Müller, Hans", fromAddr: "hans@example.de", text: "Hallo.",
		warn: "malformed From"},
	{file: "no_from.eml", wantErr: true},
	// A stranger listing another team's Message-IDs (TestHeaderThreadingOnlyWithinTeam
	// delivers it: he gets a ticket of his own).
	{file: "hostile_cross_team_references.eml", subject: "Re: a question about my order", fromName: "Mallory", fromAddr: "mallory@evil.test",
		messageID: "<hostile-cross-team-1@evil.test>", textHas: []string{"Hello, please tell me what this ticket is about."}},

	// Broken MIME: recovered with warnings.
	{file: "broken_no_boundary.eml", subject: "No boundary", fromAddr: "vera@example.com",
		text: "The text inside a multipart that lost its boundary.", warn: "multipart without boundary"},
	{file: "broken_truncated.eml", subject: "Truncated", fromAddr: "walt@example.com", attach: 1,
		text: "First part survives.", anyWarning: true},
	{file: "broken_base64.eml", subject: "Bad base64", fromAddr: "xena@example.com",
		text: "The printer is on fire, please help.", anyWarning: true},
	{file: "header_only.eml", subject: "Header only", fromAddr: "yuri@example.com", text: ""},
	{file: "binary_junk.eml", wantErr: true},
}

func TestCorpus(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range corpus {
		seen[tc.file] = true
		t.Run(strings.TrimSuffix(tc.file, ".eml"), func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(raw, ParseOptions{MaxAttachmentBytes: tc.maxAttach})
			if tc.wantErr {
				if err == nil || !errors.Is(err, ErrNotMail) {
					t.Fatalf("err = %v, want ErrNotMail", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkCorpusCase(t, tc, m, len(raw))
		})
	}
	files, _ := filepath.Glob("testdata/*.eml")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no expectation in the corpus table", f)
		}
	}
}

func checkCorpusCase(t *testing.T, tc corpusCase, m *Message, size int) {
	t.Helper()
	eq := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	eq("Subject", m.Subject, tc.subject)
	eq("From.Address", m.From.Address, tc.fromAddr)
	if tc.fromName != "" {
		eq("From.Name", m.From.Name, tc.fromName)
	}
	switch tc.messageID {
	case "":
		if !strings.HasPrefix(m.MessageID, "<") || !strings.HasSuffix(m.MessageID, ">") {
			t.Errorf("MessageID = %q, want <...>", m.MessageID)
		}
	case "-":
		eq("MessageID", m.MessageID, "")
	default:
		eq("MessageID", m.MessageID, tc.messageID)
	}
	if tc.text != "" || (len(tc.textHas) == 0 && tc.text == "") {
		eq("Text", m.Text, tc.text)
	}
	for _, s := range tc.textHas {
		if !strings.Contains(m.Text, s) {
			t.Errorf("Text lacks %q:\n%s", s, m.Text)
		}
	}
	for _, s := range tc.textLacks {
		if strings.Contains(m.Text, s) {
			t.Errorf("Text contains %q:\n%s", s, m.Text)
		}
	}
	for _, s := range tc.fullHas {
		if !strings.Contains(m.FullText, s) {
			t.Errorf("FullText lacks %q:\n%s", s, m.FullText)
		}
	}
	eq("Auto", m.Auto, tc.auto)
	if len(m.Attachments) != tc.attach {
		t.Errorf("%d attachments, want %d: %+v", len(m.Attachments), tc.attach, m.Attachments)
	}
	checkWarnings(t, tc, m.Warnings)
	if m.Size != size || !utf8.ValidString(m.Text) || !utf8.ValidString(m.FullText) || !utf8.ValidString(m.Subject) {
		t.Errorf("invariants: Size %d (raw %d), Text/FullText/Subject valid UTF-8?", m.Size, size)
	}
}

func checkWarnings(t *testing.T, tc corpusCase, warnings []string) {
	t.Helper()
	switch {
	case tc.anyWarning:
		if len(warnings) == 0 {
			t.Errorf("no Warning, want some")
		}
	case tc.warn == "":
		if len(warnings) > 0 {
			t.Errorf("Warnings = %q, want none", warnings)
		}
	default:
		for _, w := range warnings {
			if strings.Contains(w, tc.warn) {
				return
			}
		}
		t.Errorf("Warnings = %q, want one containing %q", warnings, tc.warn)
	}
}
