ALTER TABLE "mailbox_request_slots" ADD COLUMN "wanted_by" text;--> statement-breakpoint
ALTER TABLE "mailbox_request_slots" ADD COLUMN "wanted_until" timestamp with time zone;