CREATE TABLE "attachment_blobs" (
	"id" uuid PRIMARY KEY NOT NULL,
	"size" integer NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "attachment_chunks" (
	"blob_id" uuid NOT NULL,
	"seq" integer NOT NULL,
	"data" "bytea" NOT NULL,
	CONSTRAINT "attachment_chunks_blob_id_seq_pk" PRIMARY KEY("blob_id","seq")
);
--> statement-breakpoint
ALTER TABLE "outbound_attachments" ADD COLUMN "blob_id" uuid;--> statement-breakpoint
ALTER TABLE "attachment_chunks" ADD CONSTRAINT "attachment_chunks_blob_id_attachment_blobs_id_fk" FOREIGN KEY ("blob_id") REFERENCES "public"."attachment_blobs"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "outbound_attachments" ADD CONSTRAINT "outbound_attachments_blob_id_attachment_blobs_id_fk" FOREIGN KEY ("blob_id") REFERENCES "public"."attachment_blobs"("id") ON DELETE restrict ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "outbound_attachments_blob_idx" ON "outbound_attachments" USING btree ("blob_id");--> statement-breakpoint
-- Move stored attachment content into 1 MiB chunks; 0008 then drops the old column.
UPDATE "outbound_attachments" SET "blob_id" = gen_random_uuid() WHERE "blob_id" IS NULL;--> statement-breakpoint
INSERT INTO "attachment_blobs" ("id", "size") SELECT "blob_id", length("content") FROM "outbound_attachments";--> statement-breakpoint
INSERT INTO "attachment_chunks" ("blob_id", "seq", "data")
  SELECT a."blob_id", s.seq, substring(a."content" FROM s.seq * 1048576 + 1 FOR 1048576)
  FROM "outbound_attachments" a, generate_series(0, greatest(ceil(length(a."content") / 1048576.0)::int - 1, 0)) AS s(seq);
