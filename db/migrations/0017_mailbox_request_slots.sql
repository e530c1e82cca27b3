CREATE TABLE "mailbox_request_slots" (
	"mailbox" text NOT NULL,
	"slot" smallint NOT NULL,
	"holder" text,
	"held_until" timestamp with time zone,
	"paused_until" timestamp with time zone,
	CONSTRAINT "mailbox_request_slots_mailbox_slot_pk" PRIMARY KEY("mailbox","slot")
);
